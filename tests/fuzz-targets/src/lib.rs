//! The fuzz targets, as plain functions of their input bytes, so that libFuzzer
//! (`fuzz/`, nightly, `scripts/fuzz.sh`) and the stable test suite (the corpora replayed
//! by `tests/replay.rs`) run the same code. Each target feeds its bytes where a guest, a
//! network peer or a file would, and lets every check the code makes run; a panic, a hang
//! or a sanitizer report is the finding.
//!
//! | target | the input | the code under it |
//! | --- | --- | --- |
//! | `chain` | a descriptor table, a head index and guest memory | vfpgad's chain decoding and the device logic behind it |
//! | `stream` | what a peer sends on a stream connection | the request loop of vfpgad's listeners and of the board agent, with the sim engine |
//! | `manifest` | a bitstream manifest | the manifest parser and checks |
//! | `config` | a vfpgad configuration file | parsing, validation and `--check`'s summary |
//! | `xen_guest` | a `vfpga-xen guest-config` description | parsing, validation, xl.cfg output |
//! | `pxe` | a `vfpga-pxe` description | parsing |

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use vfpga_engine::sim::SimEngine;
use vfpga_engine::Engine;
use vfpgad::config::DeviceLimits;
use vfpgad::device::Device;
use vfpgad::sched::Scheduler;
use vfpgad::stream::serve::{serve, Conn, Rules};
use vfpgad::tenant::{Policy, Tenant};

/// The names of the targets, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: [&str; 7] = [
    "chain",
    "stream",
    "manifest",
    "config",
    "xen_guest",
    "pxe",
    "vhost_user",
];

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "chain" => chain(data),
        "stream" => stream(data),
        "manifest" => manifest(data),
        "config" => config(data),
        "xen_guest" => xen_guest(data),
        "pxe" => pxe(data),
        "vhost_user" => vhost_user(data),
        _ => {}
    }
}

fn engine() -> Arc<dyn Engine> {
    static E: OnceLock<Arc<dyn Engine>> = OnceLock::new();
    E.get_or_init(|| match SimEngine::new(None) {
        Ok(e) => Arc::new(e),
        Err(e) => panic!("the sim engine: {e}"),
    })
    .clone()
}

/// Limits small enough that every run the fuzzer asks for is quick.
fn limits() -> DeviceLimits {
    DeviceLimits {
        max_request_bytes: 1 << 20,
        max_segments: 64,
        ..DeviceLimits::default()
    }
}

/// In a `stream` input, these eight bytes stand for the id of the last session the
/// server opened (ids carry a random salt no fixed input could know).
pub const SESSION_MARK: [u8; 8] = *b"SESSION!";

/// A peer's bytes in, the answers out to nowhere (but the last value answered, which
/// stands in for [`SESSION_MARK`]).
struct Feed<'a> {
    input: &'a [u8],
    last_value: u64,
}

impl Read for Feed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        let got = &mut buf[..n];
        let mut i = 0;
        while i + 8 <= got.len() {
            if got[i..i + 8] == SESSION_MARK {
                got[i..i + 8].copy_from_slice(&self.last_value.to_le_bytes());
                i += 8;
            } else {
                i += 1;
            }
        }
        Ok(n)
    }
}

impl Write for Feed<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A response is written whole, before its outputs.
        if let Ok(raw) = <&[u8; vfpga_proto::Response::SIZE]>::try_from(buf) {
            let r = vfpga_proto::Response::from_bytes(raw);
            if r.value != 0 {
                self.last_value = r.value;
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Conn for Feed<'_> {
    fn set_deadline(&mut self, _until: Option<Instant>) {}
}

/// What a peer sends on a stream connection, through the request loop every stream
/// listener (and the board agent) uses, on the sim engine.
pub fn stream(data: &[u8]) {
    static SCHED: OnceLock<Scheduler<()>> = OnceLock::new();
    let sched = SCHED.get_or_init(|| Scheduler::new(1, Duration::ZERO));
    let dev = Device::for_stream(
        Tenant::new("fuzz", Policy::default()),
        limits(),
        engine(),
        Arc::default(),
    );
    let stop = AtomicBool::new(false);
    let rules = Rules {
        max_request_bytes: limits().max_request_bytes,
        idle: None,
        turns: sched,
        stop: &stop,
        extra: None,
    };
    let mut feed = Feed {
        input: data,
        last_value: 0,
    };
    let _ = serve(&mut feed, &dev, &rules);
}

/// A descriptor chain as a guest lays it out: the input is the head index, a
/// descriptor table of up to 32 entries and the rest of guest memory; descriptors
/// address guest memory (an address is taken modulo its size unless its flags carry
/// bit 15, which leaves it raw), and the decoded request goes on to the device.
pub fn chain(data: &[u8]) {
    use virtio_queue::{Queue, QueueOwnedT, QueueT};
    use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

    const MEM: u64 = 1 << 20;
    const MEM_BYTES: usize = 1 << 20;
    const TABLE: u64 = 0x1000;
    const AVAIL: u64 = 0x2000;
    const USED: u64 = 0x3000;
    const DATA: u64 = 0x4000;
    const SIZE: u16 = 32;
    let Some((&[h0, h1, n], rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let n = usize::from(n) % usize::from(SIZE) + 1;
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_BYTES)]) else {
        return;
    };
    let (table, payload) = rest.split_at(rest.len().min(n * 16));
    let mut t = table.to_vec();
    for d in t.chunks_exact_mut(16) {
        let flags = u16::from_le_bytes([d[12], d[13]]);
        if flags & 0x8000 == 0 {
            let addr = u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8])) % MEM;
            d[..8].copy_from_slice(&addr.to_le_bytes());
        }
    }
    let head = u16::from_le_bytes([h0, h1]) % SIZE;
    let writes = [
        mem.write_slice(&t, GuestAddress(TABLE)),
        mem.write_slice(
            &payload[..payload.len().min(MEM_BYTES - 0x4000)],
            GuestAddress(DATA),
        ),
        // avail ring: flags 0, idx 1, ring[0] = head
        mem.write_slice(&[0, 0, 1, 0], GuestAddress(AVAIL)),
        mem.write_slice(&head.to_le_bytes(), GuestAddress(AVAIL + 4)),
    ];
    if writes.iter().any(Result::is_err) {
        return;
    }
    let Ok(mut q) = Queue::new(SIZE) else { return };
    q.set_size(SIZE);
    // The three addresses are below 4 GiB: their high halves are 0.
    let low = |a: u64| u32::try_from(a).ok();
    q.set_desc_table_address(low(TABLE), Some(0));
    q.set_avail_ring_address(low(AVAIL), Some(0));
    q.set_used_ring_address(low(USED), Some(0));
    q.set_ready(true);
    let atomic = GuestMemoryAtomic::new(mem);
    let guard = atomic.memory();
    let Some(chain) = q.iter(guard.clone()).ok().and_then(|mut i| i.next()) else {
        return;
    };
    // The walk a resumed worker makes from a head follows the chain exactly as the
    // queue's own iterator does, whatever the guest wrote.
    let head = chain.head_index();
    let walked = vfpgad::chain::Walk::new(&guard, TABLE, SIZE, head);
    assert!(
        chain.clone().map(desc_tuple).eq(walked.map(desc_tuple)),
        "the resume walk and the queue's iterator differ"
    );
    let limits = limits();
    let mut scratch = vfpgad::chain::Scratch::new(limits.max_segments);
    let _ = vfpgad::chain::decode(head, chain, &guard, &limits, &mut scratch);
}

fn desc_tuple(d: virtio_queue::desc::split::Descriptor) -> (u64, u32, u16, u16) {
    (d.addr().0, d.len(), d.flags(), d.next())
}

/// A bitstream manifest.
pub fn manifest(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = vfpga_engine::Catalog::from_toml(text, "fuzz");
    }
}

/// A vfpgad configuration file, checked and summarised as `--check` does; the summary
/// must read back as the same configuration.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = toml::from_str::<vfpgad::Config>(text) else {
        return;
    };
    if c.validate().is_ok() {
        let mut out = Vec::new();
        if vfpgad::check::summary(&mut out, &c, None).is_ok() {
            // What --check prints is a file that reads back as the same configuration.
            let text = String::from_utf8_lossy(&out);
            let back = toml::from_str::<vfpgad::Config>(&text);
            assert!(matches!(&back, Ok(b) if *b == c), "{back:?}\n{text}");
        }
    }
}

/// A `vfpga-xen guest-config` description.
pub fn xen_guest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = toml::from_str::<vfpga_xen::guest::GuestSpec>(text) else {
        return;
    };
    let host = vfpga_xen::guest::Host {
        arch: "x86_64".into(),
        xen: Some((4, 19)),
        xen_from_flag: true,
        sysfs: "/nonexistent".into(),
    };
    if spec.validate(&host).is_ok() {
        let _ = spec.to_xl_cfg("fuzz");
    }
}

/// A `vfpga-pxe` description.
pub fn pxe(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = vfpga_pxe::description::Description::parse(text, Path::new("fuzz"), Path::new("/"));
    }
}

/// What a frontend sends `vfpgad --supervise`: vhost-user messages read one after
/// another from a socket, each noted in a journal as the relay does, the journal then
/// replayed. Whatever comes, reading ends with an error or the input's end, and the
/// journal stays within one entry per kind of state and ring.
pub fn vhost_user(data: &[u8]) {
    use std::io::Write;
    use vfpgad::supervise::{journal::Journal, wire};
    let Ok((mut frontend, relay)) = std::os::unix::net::UnixStream::pair() else {
        return;
    };
    // The whole input, then the end. A socket pair's buffer holds more than the inputs
    // fuzzing makes; a larger one is cut.
    if frontend
        .write_all(&data[..data.len().min(64 * 1024)])
        .is_err()
    {
        return;
    }
    drop(frontend);
    let mut journal = Journal::for_rings(3);
    while let Ok(msg) = wire::read(&relay) {
        if msg.req == 1 {
            journal.offered(msg.u64_at(0).unwrap_or(0));
        }
        if journal.record(&msg).is_err() {
            return;
        }
        let _ = journal.reply_ack();
    }
    let Ok(replay) = journal.replay(|ring| (ring % 2 == 0).then_some(7)) else {
        return;
    };
    // Device set-up (5 kinds), 7 kinds per ring for 3 rings, 256 config offsets.
    assert!(replay.len() <= 5 + 7 * 3 + 256, "{} entries", replay.len());
    assert!(journal.kicks().count() <= 3);
}
