//! The same messages on a byte stream (TCP with TLS to a board agent, vsock): a request
//! is exactly the device-readable bytes of a chain — header, argument table, input
//! buffers — and its answer is the response followed by the output buffers when the
//! status is OK (`written` bytes; nothing on error). No extra framing: every length
//! follows from the header and the argument table, which are checked before any
//! length is trusted.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::{AbiError, ArgEntry, ChainLayout, Opcode, RequestHeader, Response, MAX_ARGS};

/// Why a stream could not deliver a message.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The peer closed the stream between messages.
    #[error("connection closed")]
    Closed,
    /// Transport failure (including timeouts and a close in the middle of a message).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer sent something the ABI refuses; answer it and close the stream.
    #[error("{0}")]
    Abi(AbiError),
    /// A well-formed request larger than this peer accepts. The stream is still in
    /// step once the request's `in_bytes` of inputs are skipped: answer `TOO_LARGE`
    /// with `tag` and go on.
    #[error(
        "request of {in_bytes} + {out_bytes} bytes: more than the {max_bytes} this peer accepts"
    )]
    TooLarge {
        /// The request's tag.
        tag: u64,
        /// Input bytes that follow the argument table.
        in_bytes: u64,
        /// Output bytes it asked for.
        out_bytes: u64,
        /// The limit.
        max_bytes: u64,
    },
}

/// A request header and argument table read from a stream.
#[derive(Clone, Copy, Debug)]
pub struct StreamRequest {
    /// The header.
    pub hdr: RequestHeader,
    /// Its operation.
    pub op: Opcode,
    /// Argument table (first `n_args` entries).
    pub args: [ArgEntry; MAX_ARGS],
    /// Entries used.
    pub n_args: usize,
    /// Byte counts the table implies.
    pub layout: ChainLayout,
}

impl StreamRequest {
    /// The argument table.
    pub fn args(&self) -> &[ArgEntry] {
        &self.args[..self.n_args]
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean end of stream before the
/// first byte.
fn read_all_or_eof<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) if done == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads and checks a request's header and argument table. The caller then reads
/// `layout.in_bytes` bytes of inputs. Requests larger than `max_bytes` (inputs plus
/// outputs) are refused with `TOO_LARGE` before anything else is read.
pub fn read_request<R: Read>(r: &mut R, max_bytes: u64) -> Result<StreamRequest, StreamError> {
    let mut raw = [0u8; RequestHeader::SIZE];
    if !read_all_or_eof(r, &mut raw)? {
        return Err(StreamError::Closed);
    }
    let hdr = RequestHeader::from_bytes(&raw);
    let op = hdr.check(MAX_ARGS).map_err(StreamError::Abi)?;
    let n_args = hdr.n_args as usize;
    let mut args = [ArgEntry::default(); MAX_ARGS];
    for a in &mut args[..n_args] {
        let mut raw = [0u8; ArgEntry::SIZE];
        r.read_exact(&mut raw)?;
        *a = ArgEntry::from_bytes(&raw);
    }
    let layout = ChainLayout::of(&args[..n_args]).map_err(StreamError::Abi)?;
    if layout.in_bytes.saturating_add(layout.out_bytes) > max_bytes {
        return Err(StreamError::TooLarge {
            tag: hdr.tag,
            in_bytes: layout.in_bytes,
            out_bytes: layout.out_bytes,
            max_bytes,
        });
    }
    Ok(StreamRequest {
        hdr,
        op,
        args,
        n_args,
        layout,
    })
}

/// Writes a request's header and argument table (the inputs follow, from the caller).
pub fn write_request<W: Write>(
    w: &mut W,
    hdr: &RequestHeader,
    args: &[ArgEntry],
) -> io::Result<()> {
    write_request_with(w, hdr, args, &[])
}

/// Longest request head: the header and a full argument table.
pub const MAX_HEAD: usize = RequestHeader::SIZE + MAX_ARGS * ArgEntry::SIZE;

/// The header and argument table as they go on the stream, and their length.
pub fn request_head(hdr: &RequestHeader, args: &[ArgEntry]) -> io::Result<([u8; MAX_HEAD], usize)> {
    if args.len() > MAX_ARGS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} arguments: at most {MAX_ARGS}", args.len()),
        ));
    }
    let mut head = [0u8; MAX_HEAD];
    head[..RequestHeader::SIZE].copy_from_slice(&hdr.to_bytes());
    let mut n = RequestHeader::SIZE;
    for a in args {
        head[n..n + ArgEntry::SIZE].copy_from_slice(&a.to_bytes());
        n += ArgEntry::SIZE;
    }
    Ok((head, n))
}

/// Writes a request's header, argument table and then `inputs` (all of them, or the
/// first of them: the caller writes the rest) in as few writes as the stream takes:
/// one system call, and over TLS one record, for a small request.
pub fn write_request_with<W: Write>(
    w: &mut W,
    hdr: &RequestHeader,
    args: &[ArgEntry],
    inputs: &[&[u8]],
) -> io::Result<()> {
    let (head, n) = request_head(hdr, args)?;
    let mut parts = [&[][..]; 1 + MAX_ARGS];
    parts[0] = &head[..n];
    let k = inputs.len().min(MAX_ARGS);
    parts[1..=k].copy_from_slice(&inputs[..k]);
    write_all_parts(w, &parts[..=k])?;
    for rest in &inputs[k..] {
        w.write_all(rest)?;
    }
    Ok(())
}

/// Writes every byte of `parts`, in order, with vectored writes (as many parts per
/// call as the stream takes), never allocating.
pub fn write_all_parts<W: Write + ?Sized>(w: &mut W, parts: &[&[u8]]) -> io::Result<()> {
    const AT_ONCE: usize = 1 + MAX_ARGS;
    let (mut i, mut off) = (0, 0);
    loop {
        while i < parts.len() && off == parts[i].len() {
            i += 1;
            off = 0;
        }
        if i == parts.len() {
            return Ok(());
        }
        let mut slices = [io::IoSlice::new(&[]); AT_ONCE];
        slices[0] = io::IoSlice::new(&parts[i][off..]);
        let mut k = 1;
        for p in parts[i + 1..].iter().take(AT_ONCE - 1) {
            slices[k] = io::IoSlice::new(p);
            k += 1;
        }
        let mut n = match w.write_vectored(&slices[..k]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 && i < parts.len() {
            let rest = parts[i].len() - off;
            if n >= rest {
                n -= rest;
                i += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
}

/// Reads and drops `n` bytes (the inputs of a refused request), through a buffer on
/// the stack.
pub fn skip<R: Read>(r: &mut R, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.by_ref().take(n), &mut io::sink())?;
    if copied < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// A connected socket whose reads and writes can time out: TCP, unix and vsock streams.
pub trait TimeoutSocket: Read + Write {
    /// Sets `SO_RCVTIMEO` (`None`: wait forever).
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    /// Sets `SO_SNDTIMEO` (`None`: wait forever).
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl TimeoutSocket for TcpStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, t)
    }
}

impl TimeoutSocket for UnixStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, t)
    }
}

/// A socket whose reads and writes all end by one instant: a socket timeout alone
/// bounds each call, so a peer trickling a byte at a time could stretch a message
/// forever. Calls wait in slices of at most [`Deadline::SLICE`] (never past the
/// deadline) and are retried while time is left; once the instant has passed, they
/// fail with `TimedOut`. Without a deadline, calls wait as long as they need (an idle
/// connection between messages). The socket's timeouts change only when the slice
/// does, so the steady state costs no system call beyond the transfer itself.
#[derive(Debug)]
pub struct Deadline<S = TcpStream> {
    inner: S,
    until: Option<Instant>,
    /// What `SO_RCVTIMEO` and `SO_SNDTIMEO` are set to (`None`: not known yet).
    set_r: Option<Duration>,
    set_w: Option<Duration>,
}

impl<S: TimeoutSocket> Deadline<S> {
    /// Longest a single wait lasts before the deadline is looked at again.
    pub const SLICE: Duration = Duration::from_millis(500);

    /// Wraps `inner`, with no deadline.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            until: None,
            set_r: None,
            set_w: None,
        }
    }

    /// Every call from now on must end by `until` (`None`: no bound).
    pub fn set(&mut self, until: Option<Instant>) {
        self.until = until;
    }

    /// Every call from now on must end within `t` from now.
    pub fn set_in(&mut self, t: Duration) {
        self.until = Instant::now().checked_add(t);
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Sets the socket's timeout for the next wait; `TimedOut` once the deadline passed.
    fn arm(&mut self, read: bool) -> io::Result<()> {
        let slice = match self.until {
            None => Self::SLICE,
            Some(u) => {
                let left = u.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
                }
                left.min(Self::SLICE)
            }
        };
        let set = if read { self.set_r } else { self.set_w };
        if set != Some(slice) {
            if read {
                self.inner.set_read_timeout(Some(slice))?;
                self.set_r = Some(slice);
            } else {
                self.inner.set_write_timeout(Some(slice))?;
                self.set_w = Some(slice);
            }
        }
        Ok(())
    }

    /// Whether a call that timed out may wait again.
    fn again(&self, e: &io::Error) -> bool {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
        ) && !self.until.is_some_and(|u| Instant::now() >= u)
    }
}

impl<S: TimeoutSocket> Read for Deadline<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.arm(true)?;
            match self.inner.read(buf) {
                // A wait that ran out moved no byte: waiting again is safe.
                Err(e) if self.again(&e) => {}
                r => return r,
            }
        }
    }
}

impl<S: TimeoutSocket> Write for Deadline<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            self.arm(false)?;
            match self.inner.write(buf) {
                Err(e) if self.again(&e) => {}
                r => return r,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a response (the caller then reads `written` bytes of outputs when it is OK).
pub fn read_response<R: Read>(r: &mut R) -> Result<Response, StreamError> {
    let mut raw = [0u8; Response::SIZE];
    if !read_all_or_eof(r, &mut raw)? {
        return Err(StreamError::Closed);
    }
    Ok(Response::from_bytes(&raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ElemType;

    /// Takes at most `max` bytes per call, of the first buffer or across buffers.
    struct Stingy {
        got: Vec<u8>,
        max: usize,
        calls: usize,
    }

    impl Write for Stingy {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[io::IoSlice::new(b)])
        }
        fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = (self.max - n).min(b.len());
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.max {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn parts_arrive_whole_and_in_order_however_the_stream_cuts_them() {
        let parts: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; usize::from(i) * 7]).collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let want: Vec<u8> = parts.concat();
        for max in [1, 3, 7, 64, 1 << 20] {
            let mut w = Stingy {
                got: Vec::new(),
                max,
                calls: 0,
            };
            write_all_parts(&mut w, &refs).unwrap();
            assert_eq!(w.got, want, "max {max}");
            if max == 1 << 20 {
                assert_eq!(w.calls, 2, "nine parts per call");
            }
        }
        let mut zero = Stingy {
            got: Vec::new(),
            max: 0,
            calls: 0,
        };
        let e = write_all_parts(&mut zero, &refs).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
    }

    #[test]
    fn a_small_request_is_one_write() {
        let args = [
            ArgEntry::input(ElemType::U32, 8),
            ArgEntry::scalar(ElemType::U32, 2),
        ];
        let hdr = RequestHeader::new(Opcode::Run, 7, 9, args.len());
        let mut w = Stingy {
            got: Vec::new(),
            max: usize::MAX,
            calls: 0,
        };
        write_request_with(&mut w, &hdr, &args, &[&[1, 2, 3, 4, 5, 6, 7, 8]]).unwrap();
        assert_eq!(w.calls, 1);
        let mut plain = Vec::new();
        write_request(&mut plain, &hdr, &args).unwrap();
        plain.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(w.got, plain);
        let many = [ArgEntry::scalar(ElemType::U32, 0); MAX_ARGS + 1];
        let e = write_request(&mut plain, &hdr, &many).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_request_round_trips_and_lengths_are_checked_first() {
        let args = [
            ArgEntry::input(ElemType::U8, 3),
            ArgEntry::output(ElemType::U8, 32),
            ArgEntry::scalar(ElemType::U64, 3),
        ];
        let mut wire = Vec::new();
        write_request(&mut wire, &RequestHeader::new(Opcode::Run, 5, 9, 3), &args).unwrap();
        wire.extend_from_slice(b"abc");
        let mut r = &wire[..];
        let req = read_request(&mut r, 1 << 20).unwrap();
        assert_eq!(
            (req.op, req.hdr.tag, req.args()),
            (Opcode::Run, 5, &args[..])
        );
        assert_eq!((req.layout.in_bytes, req.layout.out_bytes), (3, 32));
        assert_eq!(r, b"abc");
        // Too large: refused with the tag, and skipping the inputs keeps the stream in
        // step for the next request.
        wire.extend_from_slice(&wire.clone());
        let mut r = &wire[..];
        match read_request(&mut r, 16) {
            Err(StreamError::TooLarge {
                tag: 5,
                in_bytes: 3,
                out_bytes: 32,
                max_bytes: 16,
            }) => {}
            other => panic!("{other:?}"),
        }
        skip(&mut r, 3).unwrap();
        assert_eq!(read_request(&mut r, 1 << 20).unwrap().hdr.tag, 5);
        assert!(skip(&mut &b"ab"[..], 3).is_err());
        assert!(matches!(
            read_request(&mut &b""[..], 1),
            Err(StreamError::Closed)
        ));
        assert!(matches!(
            read_request(&mut &wire[..20], 1 << 20),
            Err(StreamError::Io(_))
        ));
        let mut bad = wire.clone();
        bad[0] ^= 1;
        assert!(matches!(
            read_request(&mut &bad[..], 1 << 20),
            Err(StreamError::Abi(_))
        ));
    }

    #[test]
    fn a_deadline_bounds_a_trickling_peer_and_can_be_lifted() {
        use std::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // One byte every 40 ms: each read succeeds well within any per-call timeout,
            // and the 100 bytes asked for would take 4 s.
            for _ in 0..120 {
                if s.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(40));
            }
            std::thread::sleep(Duration::from_millis(800));
        });
        let mut d = Deadline::new(TcpStream::connect(addr).unwrap());
        d.set_in(Duration::from_millis(300));
        let t0 = Instant::now();
        let mut buf = [0u8; 100];
        let e = d.read_exact(&mut buf).unwrap_err();
        let took = t0.elapsed();
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{e:?}"
        );
        // Cut by the deadline, not by the end of the trickle (a loaded machine may be
        // late, but not by seconds).
        assert!(took < Duration::from_millis(3000), "{took:?}");
        // Lifted: a read waits past a slice instead of failing. The peer pauses
        // longer than a slice once its bytes are out; the read then ends with the
        // connection's close.
        d.set(None);
        let mut rest = Vec::new();
        let t1 = Instant::now();
        d.read_to_end(&mut rest).unwrap();
        assert!(!rest.is_empty());
        assert!(
            t1.elapsed() > Deadline::<TcpStream>::SLICE,
            "{:?}",
            t1.elapsed()
        );
        drop(d);
        peer.join().unwrap();
    }
}
