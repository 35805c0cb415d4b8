//! Guests on byte streams: the real `vfpgad` serving unix-socket and TLS listeners,
//! driven by the guest library (the well-behaved guest) and by raw sockets (the hostile
//! ones): malformed headers, lying and overflowing lengths, truncated streams, peers that
//! trickle or never read, connection floods, another stream's session ids, certificates
//! of the wrong guest or CA. After each, a well-behaved guest is still served.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{vadd_ok, Daemon};
use vfpga::{Arg, Device, Options};
use vfpga_proto::stream::{read_response, write_request};
use vfpga_proto::*;
use vfpga_reference::{self as reference, le, Rng};
use vfpga_transport::TlsFiles;

/// A deployment's certificates: the CA, vfpgad's (server, for 127.0.0.1) and clients
/// named `vm0`, `vm1` and `vm2`.
fn pki() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    vfpga_agent::cert::init(d.path(), &["127.0.0.1".into()], "vm0").unwrap();
    for name in ["vm1", "vm2"] {
        vfpga_agent::cert::issue(
            d.path(),
            name,
            &[name.to_owned()],
            vfpga_agent::cert::Kind::Client(vfpga_agent::cert::Role::Run),
            365,
            false,
        )
        .unwrap();
    }
    d
}

fn client_files(pki: &Path, prefix: &str) -> TlsFiles {
    TlsFiles {
        ca: pki.join("ca.pem"),
        cert: pki.join(format!("{prefix}.pem")),
        key: pki.join(format!("{prefix}.key")),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// vfpgad with guests `vm0` and `vm1` on unix sockets (and `vm0`, `vm1` on one TLS
/// port when `tls` is given), with `toml` added to its configuration file.
struct Streams {
    d: Daemon,
    tls: Option<(tempfile::TempDir, u16)>,
}

impl Streams {
    fn start(with_tls: bool, toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sock = |g: &str| dir.path().join(format!("{g}.stream"));
        let mut text = String::from(toml);
        let tls = with_tls.then(|| (pki(), free_port()));
        if let Some((p, _)) = &tls {
            text.push_str(&format!(
                "\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
                p.path().join("ca.pem"),
                p.path().join("server.pem"),
                p.path().join("server.key")
            ));
        }
        for g in ["vm0", "vm1"] {
            let mut listen = format!("\"unix:{}\"", sock(g).display());
            if let Some((_, port)) = &tls {
                listen.push_str(&format!(", \"tls:127.0.0.1:{port}\""));
            }
            text.push_str(&format!(
                "\n[[guest]]\nname = \"{g}\"\nlisten = [{listen}]\n"
            ));
        }
        let config = dir.path().join("vfpgad.toml");
        std::fs::write(&config, text).unwrap();
        let wait = vec![sock("vm0"), sock("vm1")];
        let d = Daemon::launch(
            dir,
            wait,
            &["--config".into(), config.display().to_string()],
        );
        Self { d, tls }
    }

    fn path(&self, guest: &str) -> PathBuf {
        self.d.dir.path().join(format!("{guest}.stream"))
    }

    fn uri(&self, guest: &str) -> String {
        format!("unix:{}", self.path(guest).display())
    }

    fn raw(&self, guest: &str) -> UnixStream {
        let s = UnixStream::connect(self.path(guest)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    }

    fn tls_uri(&self) -> String {
        format!("tls://127.0.0.1:{}", self.tls.as_ref().unwrap().1)
    }

    fn tls_open(&self, prefix: &str) -> Result<Device, vfpga::Error> {
        let o = Options {
            tls: Some(client_files(self.tls.as_ref().unwrap().0.path(), prefix)),
            ..Options::default()
        };
        Device::open_with(self.tls_uri(), &o)
    }
}

fn still_served(s: &Streams) {
    for g in ["vm0", "vm1"] {
        vadd_ok(&Device::open(s.uri(g)).unwrap(), 1000, 5);
    }
}

/// Sends a raw header (and argument table), returns the answer's status and tag.
fn send_raw(c: &mut UnixStream, hdr: &RequestHeader, args: &[ArgEntry], tail: &[u8]) {
    write_request(c, hdr, args).unwrap();
    c.write_all(tail).unwrap();
}

fn answer(c: &mut UnixStream) -> Response {
    read_response(c).unwrap()
}

/// Whether the peer closes the connection (reads end; anything still in flight to us is
/// dropped) before the socket's read timeout.
fn closed(c: &mut UnixStream) -> bool {
    let mut b = [0u8; 4096];
    loop {
        match c.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

#[test]
fn every_kernel_bit_exact_over_a_unix_socket_and_tls() {
    let s = Streams::start(true, "");
    for dev in [
        Device::open(s.uri("vm0")).unwrap(),
        s.tls_open("client").unwrap(),
    ] {
        assert_eq!(dev.info().unwrap().name, "vm0");
        let mut rng = Rng(77);
        vadd_ok(&dev, 70_000, 1);
        let fa: Vec<f32> = (0..5000)
            .map(|_| (rng.next() as i32) as f32 * 1e-3)
            .collect();
        let fb: Vec<f32> = (0..5000)
            .map(|_| (rng.next() as i32) as f32 * 7e-4)
            .collect();
        let mut fc = vec![0f32; 5000];
        dev.session("vadd_f32")
            .unwrap()
            .run(&mut [
                Arg::input(&fa),
                Arg::input(&fb),
                Arg::output(&mut fc),
                Arg::scalar(ElemType::U32, 5000),
            ])
            .unwrap();
        assert_eq!(
            le(&fc, f32::to_le_bytes),
            le(&reference::vadd_f32(&fa, &fb), f32::to_le_bytes)
        );
        let (m, k, n) = (17usize, 23usize, 11usize);
        let ma: Vec<f32> = (0..m * k)
            .map(|_| (rng.next() % 997) as f32 / 64.0)
            .collect();
        let mb: Vec<f32> = (0..k * n)
            .map(|_| (rng.next() % 991) as f32 / 32.0)
            .collect();
        let mut mc = vec![0f32; m * n];
        dev.session("mmult")
            .unwrap()
            .run(&mut [
                Arg::input(&ma),
                Arg::input(&mb),
                Arg::output(&mut mc),
                Arg::scalar(ElemType::U32, m as u64),
                Arg::scalar(ElemType::U32, k as u64),
                Arg::scalar(ElemType::U32, n as u64),
            ])
            .unwrap();
        assert_eq!(mc, reference::mmult(&ma, &mb, m, k, n));
        let x: Vec<i16> = (0..4000).map(|_| rng.next() as i16).collect();
        let taps: Vec<i32> = (0..31).map(|_| (rng.next() as i32) >> 10).collect();
        let mut y = vec![0i32; 4000];
        dev.session("fir")
            .unwrap()
            .run(&mut [
                Arg::input(&x),
                Arg::input(&taps),
                Arg::output(&mut y),
                Arg::scalar(ElemType::U32, 4000),
                Arg::scalar(ElemType::U32, 31),
            ])
            .unwrap();
        assert_eq!(y, reference::fir(&x, &taps));
        let data = rng.bytes(100_003);
        let mut digest = [0u8; 32];
        dev.session("sha256")
            .unwrap()
            .run(&mut [
                Arg::input(&data),
                Arg::output(&mut digest),
                Arg::scalar(ElemType::U64, data.len() as u64),
            ])
            .unwrap();
        assert_eq!(digest.to_vec(), reference::sha256(&data));
        let (w, h) = (61usize, 37usize);
        let img = rng.bytes(w * h);
        let mut out = vec![0u8; w * h];
        dev.session("sobel")
            .unwrap()
            .run(&mut [
                Arg::input(&img),
                Arg::output(&mut out),
                Arg::scalar(ElemType::U32, w as u64),
                Arg::scalar(ElemType::U32, h as u64),
            ])
            .unwrap();
        assert_eq!(out, reference::sobel(&img, w, h));
        // Statistics are the guest's, across its connections.
        let st = dev.stats().unwrap();
        assert!(st.runs >= 6, "{st:?}");
    }
}

#[test]
fn malformed_headers_are_answered_and_the_stream_closed() {
    let s = Streams::start(false, "");
    let good = RequestHeader::new(Opcode::Nop, 9, 0, 0);
    let cases: Vec<(RequestHeader, Status)> = vec![
        (
            RequestHeader {
                magic: 0x1234_5678,
                ..good
            },
            Status::BadRequest,
        ),
        (RequestHeader { version: 7, ..good }, Status::BadVersion),
        (RequestHeader { flags: 1, ..good }, Status::BadRequest),
        (
            RequestHeader {
                reserved: [0, 1],
                ..good
            },
            Status::BadRequest,
        ),
        (
            RequestHeader {
                opcode: 200,
                ..good
            },
            Status::Unsupported,
        ),
        (RequestHeader { n_args: 9, ..good }, Status::TooLarge),
        (
            RequestHeader {
                n_args: u32::MAX,
                ..good
            },
            Status::TooLarge,
        ),
    ];
    for (hdr, want) in cases {
        let mut c = s.raw("vm0");
        send_raw(&mut c, &hdr, &[], &[]);
        let r = answer(&mut c);
        assert_eq!((r.status(), r.tag), (Some(want), 0), "{hdr:?}");
        assert!(closed(&mut c), "the stream is closed after {hdr:?}");
    }
    // An argument entry the ABI does not know: refused with its index, stream closed.
    let mut c = s.raw("vm0");
    let mut bad = ArgEntry::input(ElemType::U8, 4);
    bad.kind = 9;
    write_request(&mut c, &RequestHeader::new(Opcode::Run, 3, 0, 1), &[bad]).unwrap();
    // The daemon may have answered and closed already: the inputs can find no reader.
    let _ = c.write_all(b"abcd");
    let r = answer(&mut c);
    assert_eq!(r.status(), Some(Status::BadRequest));
    assert!(closed(&mut c));
    still_served(&s);
}

#[test]
fn lying_and_overflowing_lengths_never_reach_the_engine() {
    let s = Streams::start(false, "[device]\nmax_request_bytes = 65536\n");
    // Lengths whose sum overflows: refused before any input is read.
    let mut c = s.raw("vm0");
    send_raw(
        &mut c,
        &RequestHeader::new(Opcode::Run, 4, 0, 2),
        &[
            ArgEntry::input(ElemType::U8, u64::MAX),
            ArgEntry::input(ElemType::U8, 2),
        ],
        &[],
    );
    let r = answer(&mut c);
    assert!(
        matches!(r.status(), Some(Status::TooLarge | Status::BadRequest)),
        "{r:?}"
    );
    // Larger than the device accepts, but well-formed: TOO_LARGE with the tag, and the
    // stream stays in step (its inputs are skipped) for the next request.
    let mut c = s.raw("vm0");
    let big = vec![7u8; 70_000];
    send_raw(
        &mut c,
        &RequestHeader::new(Opcode::Run, 5, 0, 2),
        &[
            ArgEntry::input(ElemType::U8, big.len() as u64),
            ArgEntry::output(ElemType::U8, 32),
        ],
        &big,
    );
    let r = answer(&mut c);
    assert_eq!((r.status(), r.tag), (Some(Status::TooLarge), 5));
    send_raw(&mut c, &RequestHeader::new(Opcode::Nop, 6, 0, 0), &[], &[]);
    assert_eq!(answer(&mut c).status(), Some(Status::Ok));
    // A table promising 60 000 input bytes, followed by ten and an end of stream: the
    // connection ends, nothing runs.
    let mut c = s.raw("vm0");
    send_raw(
        &mut c,
        &RequestHeader::new(Opcode::Run, 7, 0, 1),
        &[ArgEntry::input(ElemType::U8, 60_000)],
        &[1; 10],
    );
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed(&mut c));
    // Far larger than the device accepts (more than four times): answered TOO_LARGE with
    // the tag, then closed rather than skipping what an honest client would never send.
    let mut c = s.raw("vm0");
    send_raw(
        &mut c,
        &RequestHeader::new(Opcode::Run, 8, 0, 1),
        &[ArgEntry::input(ElemType::U8, 1 << 40)],
        &[0; 4096],
    );
    let r = answer(&mut c);
    assert_eq!((r.status(), r.tag), (Some(Status::TooLarge), 8));
    assert!(closed(&mut c), "a terabyte to skip closes the stream");
    // A run on a session this connection never opened is refused before its inputs are
    // kept, and they are skipped: the stream stays in step.
    let mut c = s.raw("vm0");
    send_raw(
        &mut c,
        &RequestHeader::new(Opcode::Run, 9, 77, 2),
        &[
            ArgEntry::input(ElemType::U8, 30_000),
            ArgEntry::output(ElemType::U8, 30_000),
        ],
        &[3; 30_000],
    );
    let r = answer(&mut c);
    assert_eq!((r.status(), r.tag), (Some(Status::BadSession), 9));
    send_raw(&mut c, &RequestHeader::new(Opcode::Nop, 10, 0, 0), &[], &[]);
    assert_eq!(answer(&mut c).status(), Some(Status::Ok));
    // A buffer length that is not what the kernel's dims say: BAD_ARGUMENT, in step.
    let dev = Device::open(s.uri("vm1")).unwrap();
    let sess = dev.session("vadd_u32").unwrap();
    let (a, b) = (vec![1u32; 8], vec![1u32; 7]);
    let mut out = vec![0u32; 8];
    let e = sess
        .run(&mut [
            Arg::input(&a),
            Arg::input(&b),
            Arg::output(&mut out),
            Arg::scalar(ElemType::U32, 8),
        ])
        .unwrap_err();
    assert_eq!(e.status(), Some(Status::BadArgument), "{e}");
    assert!(e.to_string().contains("argument 1 `b`"), "{e}");
    vadd_ok(&dev, 100, 3);
    still_served(&s);
}

#[test]
fn truncated_and_trickling_streams_are_cut_and_others_go_on() {
    let s = Streams::start(false, "[stream]\nidle_timeout_ms = 500\n");
    // Half a header, then silence: cut at the idle limit.
    let mut c = s.raw("vm0");
    let hdr = RequestHeader::new(Opcode::Nop, 1, 0, 0).to_bytes();
    c.write_all(&hdr[..10]).unwrap();
    let t = Instant::now();
    assert!(closed(&mut c), "a silent half header is cut");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    // A header trickled a byte every 100 ms (4.8 s in all): cut by the same limit, while
    // the other guest is served.
    let mut c = s.raw("vm0");
    let trickler = std::thread::spawn(move || {
        for b in hdr {
            if c.write_all(&[b]).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        closed(&mut c)
    });
    vadd_ok(&Device::open(s.uri("vm1")).unwrap(), 5000, 8);
    assert!(trickler.join().unwrap(), "the trickling peer was cut");
    // An idle connection is closed too, but only after the limit: one that keeps
    // asking is never cut.
    let dev = Device::open(s.uri("vm0")).unwrap();
    for _ in 0..5 {
        dev.nop().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    still_served(&s);
}

#[test]
fn a_half_header_is_cut_even_where_idle_connections_stay_open() {
    let s = Streams::start(false, "[stream]\nidle_timeout_ms = 0\n");
    // No idle limit: a connection that waits between requests is kept...
    let mut idle = s.raw("vm0");
    // ...but one byte of a header starts the header's own clock (10 s).
    let mut c = s.raw("vm0");
    let hdr = RequestHeader::new(Opcode::Nop, 1, 0, 0).to_bytes();
    c.write_all(&hdr[..1]).unwrap();
    assert!(closed(&mut c), "a header left at its first byte is cut");
    send_raw(
        &mut idle,
        &RequestHeader::new(Opcode::Nop, 2, 0, 0),
        &[],
        &[],
    );
    assert_eq!(answer(&mut idle).status(), Some(Status::Ok));
    still_served(&s);
}

#[test]
fn a_peer_that_never_reads_holds_only_its_own_connection() {
    let mut s = Streams::start(false, "");
    // 16 MiB of results that nobody reads: the daemon's writer blocks on this stream.
    let n = 4 << 20;
    let a = vec![1u8; n * 4];
    let dev = Device::open(s.uri("vm0")).unwrap();
    let mut open = UnixStream::connect(s.path("vm0")).unwrap();
    send_raw(
        &mut open,
        &RequestHeader::new(Opcode::OpenSession, 1, 0, 1),
        &[ArgEntry::input(ElemType::U8, 8)],
        b"vadd_u32",
    );
    let sess = answer(&mut open).value;
    send_raw(
        &mut open,
        &RequestHeader::new(Opcode::Run, 2, sess, 4),
        &[
            ArgEntry::input(ElemType::U32, a.len() as u64),
            ArgEntry::input(ElemType::U32, a.len() as u64),
            ArgEntry::output(ElemType::U32, a.len() as u64),
            ArgEntry::scalar(ElemType::U32, n as u64),
        ],
        &a,
    );
    open.write_all(&a).unwrap();
    // The same guest's other connections and the other guest are served meanwhile.
    vadd_ok(&dev, 10_000, 9);
    still_served(&s);
    // And the daemon stops promptly with the writer stuck.
    let t = Instant::now();
    let st =
        s.d.signal_and_wait(libc::SIGTERM, Duration::from_secs(60))
            .expect("stops on SIGTERM");
    assert!(st.success(), "{st:?}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    drop(open);
}

#[test]
fn a_connection_flood_is_bounded_per_guest() {
    let s = Streams::start(false, "[stream]\nmax_connections = 4\n");
    let mut held: Vec<UnixStream> = (0..4)
        .map(|_| {
            let mut c = s.raw("vm0");
            send_raw(&mut c, &RequestHeader::new(Opcode::Nop, 1, 0, 0), &[], &[]);
            assert_eq!(answer(&mut c).status(), Some(Status::Ok));
            c
        })
        .collect();
    for _ in 0..20 {
        let mut c = s.raw("vm0");
        assert!(closed(&mut c), "a fifth connection of vm0 is refused");
    }
    // The other guest has its own bound.
    vadd_ok(&Device::open(s.uri("vm1")).unwrap(), 100, 1);
    // The held ones still work; once one goes, a new one is let in.
    for c in &mut held {
        send_raw(c, &RequestHeader::new(Opcode::Nop, 2, 0, 0), &[], &[]);
        assert_eq!(answer(c).status(), Some(Status::Ok));
    }
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Device::open(s.uri("vm0")) {
            Ok(dev) => {
                vadd_ok(&dev, 100, 2);
                break;
            }
            // The closed connection's thread may not have noticed yet.
            Err(e) => assert!(Instant::now() < deadline, "never let in again: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn session_ids_belong_to_their_stream() {
    let s = Streams::start(false, "");
    let a = Device::open(s.uri("vm0")).unwrap();
    let sess = a.session("sha256").unwrap();
    let id = {
        let mut c = s.raw("vm0");
        send_raw(
            &mut c,
            &RequestHeader::new(Opcode::OpenSession, 1, 0, 1),
            &[ArgEntry::input(ElemType::U8, 6)],
            b"sha256",
        );
        answer(&mut c).value
    };
    // That id on another connection of the same guest, and on another guest's.
    for g in ["vm0", "vm1"] {
        let mut c = s.raw(g);
        send_raw(
            &mut c,
            &RequestHeader::new(Opcode::Run, 2, id, 3),
            &[
                ArgEntry::input(ElemType::U8, 1),
                ArgEntry::output(ElemType::U8, 32),
                ArgEntry::scalar(ElemType::U64, 1),
            ],
            b"x",
        );
        let r = answer(&mut c);
        assert_eq!((r.status(), r.tag), (Some(Status::BadSession), 2), "{g}");
        send_raw(&mut c, &RequestHeader::new(Opcode::Nop, 3, 0, 0), &[], &[]);
        assert_eq!(
            answer(&mut c).status(),
            Some(Status::Ok),
            "{g}: still in step"
        );
    }
    let mut d = [0u8; 32];
    sess.run(&mut [
        Arg::input(b"abc".as_slice()),
        Arg::output(d.as_mut_slice()),
        Arg::scalar(ElemType::U64, 3),
    ])
    .unwrap();
    assert_eq!(d.to_vec(), reference::sha256(b"abc"));
}

#[test]
fn tls_guests_are_told_apart_by_their_certificates() {
    let s = Streams::start(true, "");
    // client.pem is named vm0; vm1.pem vm1: one port, two guests.
    assert_eq!(s.tls_open("client").unwrap().info().unwrap().name, "vm0");
    assert_eq!(s.tls_open("vm1").unwrap().info().unwrap().name, "vm1");
    // A valid certificate of a guest this port does not serve.
    let e = s.tls_open("vm2").unwrap_err().to_string();
    assert!(e.contains("cannot connect"), "{e}");
    // A server certificate used as a client one, and one of another CA.
    let e = s.tls_open("server").unwrap_err().to_string();
    assert!(e.contains("cannot connect"), "{e}");
    let other = tempfile::tempdir().unwrap();
    vfpga_agent::cert::init(other.path(), &["127.0.0.1".into()], "vm0").unwrap();
    let o = Options {
        tls: Some(TlsFiles {
            ca: s.tls.as_ref().unwrap().0.path().join("ca.pem"),
            ..client_files(other.path(), "client")
        }),
        ..Options::default()
    };
    let e = Device::open_with(s.tls_uri(), &o).unwrap_err().to_string();
    assert!(e.contains("cannot connect"), "{e}");
    // No certificate at all, and a silent TCP peer: neither stops the others.
    let _silent = std::net::TcpStream::connect(("127.0.0.1", s.tls.as_ref().unwrap().1)).unwrap();
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", s.tls.as_ref().unwrap().1)).unwrap();
    plain
        .write_all(&RequestHeader::new(Opcode::Nop, 1, 0, 0).to_bytes())
        .unwrap();
    vadd_ok(&s.tls_open("vm1").unwrap(), 3000, 4);
    still_served(&s);
}
