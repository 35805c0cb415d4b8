//! The metrics endpoint: plain HTTP/1.1 `GET`s as Prometheus scrapes them, on a TCP
//! address (localhost, normally) or a unix socket.
//!
//! Written by hand: it answers three fixed pages and closes every connection, and the
//! point is its bounds, which a general server would leave to configure: at most
//! [`MAX_CONNECTIONS`] requests are read at once (others get `503` at once), a request
//! head is at most [`MAX_HEAD`] bytes and must arrive within [`HEAD_TIME`], an answer
//! must leave within [`WRITE_TIME`]. A peer that is slow, floods or sends garbage costs
//! at most those, and never the guests: the endpoint has threads of its own.

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, error, info};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use super::addr::{Addr, Conn};
use crate::limited::Limited;
use crate::sockets::wait_readable;

/// Requests read and answered at once.
pub const MAX_CONNECTIONS: usize = 4;
/// Longest request head (request line and headers).
pub const MAX_HEAD: usize = 8 << 10;
/// Time a peer has to send its request head.
pub const HEAD_TIME: Duration = Duration::from_secs(5);
/// Time an answer has to leave.
pub const WRITE_TIME: Duration = Duration::from_secs(10);

/// A page's content type and body.
pub type Page = (&'static str, String);

/// What the endpoint serves: a page for a path, `None` for an unknown one.
pub trait Pages: Send + Sync {
    /// The page at `path` (the request target without its query), in the form
    /// `accept` (the request's `Accept` header) asks for where there is a choice.
    fn page(&self, path: &str, accept: &str) -> Option<Page>;
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn accept(&self) -> io::Result<Conn> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Conn::Tcp(s)),
            Listener::Unix(l) => l.accept().map(|(s, _)| Conn::Unix(s)),
        }
    }

    fn fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l) => l.as_raw_fd(),
        }
    }
}

/// The running endpoint.
#[derive(Debug)]
pub struct Endpoint {
    addr: Addr,
    stop: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
    /// A unix socket this endpoint bound itself (removed at the end).
    path: Option<PathBuf>,
}

impl Endpoint {
    /// Serves `pages` on `addr`: on `inherited` if given (a listening socket the
    /// supervisor holds), else on a socket bound here.
    pub fn start(
        addr: &Addr,
        inherited: Option<OwnedFd>,
        mode: Option<u32>,
        gid: Option<u32>,
        pages: Arc<dyn Pages>,
    ) -> io::Result<Self> {
        let bound_here = inherited.is_none();
        let fd = match inherited {
            Some(fd) => fd,
            None => addr.bind(mode, gid)?,
        };
        let (listener, addr) = match addr {
            Addr::Tcp(_) => {
                let l = TcpListener::from(fd);
                let a = Addr::Tcp(l.local_addr()?);
                (Listener::Tcp(l), a)
            }
            Addr::Unix(p) => (
                Listener::Unix(UnixListener::from(fd)),
                Addr::Unix(p.clone()),
            ),
        };
        let path = match (&addr, bound_here) {
            (Addr::Unix(p), true) => Some(p.clone()),
            _ => None,
        };
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK)?);
        let theirs = stop.clone();
        let thread = crate::threads::spawn_running("vfpga-metrics".into(), move || {
            accept_loop(&listener, &theirs, &pages);
        })?;
        info!(%addr, "metrics endpoint listening (GET /metrics, /status)");
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
            path,
        })
    }

    /// The address it listens on (a TCP port 0 resolved).
    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    /// Stops accepting; requests being answered finish on their own threads.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.halt();
    }
}

fn accept_loop(listener: &Listener, stop: &EventFd, pages: &Arc<dyn Pages>) {
    let busy = Arc::new(AtomicUsize::new(0));
    let failures = Limited::new();
    loop {
        match wait_readable(listener.fd(), stop.as_raw_fd()) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                error!("metrics endpoint: {e}");
                return;
            }
        }
        let mut conn = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, say: give the system a moment, say so once in a while.
                crate::warn_limited!(failures, "metrics endpoint: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            busy.fetch_sub(1, Ordering::AcqRel);
            refuse_busy(&mut conn);
            continue;
        }
        let pages = pages.clone();
        let done = Guard(busy.clone());
        let spawned = std::thread::Builder::new()
            .name("vfpga-metrics-req".into())
            .spawn(move || {
                let _done = done;
                serve(&mut conn, pages.as_ref());
            });
        if let Err(e) = spawned {
            crate::warn_limited!(failures, "metrics endpoint: cannot start a thread: {e}");
        }
    }
}

/// Answers `503` without waiting for anything: this runs on the accepting thread.
/// The answer is small enough for the socket buffer (if not, the peer gets nothing);
/// what the peer sent so far is read and dropped first, so that closing does not
/// reset the connection under the answer.
fn refuse_busy(conn: &mut Conn) {
    if conn.set_nonblocking(true).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    for _ in 0..4 {
        if !matches!(conn.read(&mut buf), Ok(n) if n > 0) {
            break;
        }
    }
    let body = "too many requests at once; retry\n";
    let _ = conn.write_all(&response(503, "text/plain; charset=utf-8", body, false));
    let _ = conn.shutdown_write();
}

/// Gives a connection slot back however its thread ends.
struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads one request, answers it, closes.
fn serve(conn: &mut Conn, pages: &dyn Pages) {
    let answer = match read_head(conn, Instant::now() + HEAD_TIME) {
        Ok(head) => answer(&head, pages),
        Err(HeadError::Io(e)) => {
            debug!("metrics endpoint: request not read: {e}");
            return;
        }
        Err(e) => {
            debug!("metrics endpoint: {e}");
            response(
                e.code(),
                "text/plain; charset=utf-8",
                &format!("{e}\n"),
                false,
            )
        }
    };
    if write_by(conn, &answer, Instant::now() + WRITE_TIME).is_ok() {
        linger(conn);
    }
}

/// Writes all of `bytes` by `deadline`: a peer reading a little at a time cannot hold
/// the connection (and its slot) longer than that.
fn write_by(conn: &mut Conn, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        conn.set_write_timeout(Some(left))?;
        match conn.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Bytes read and dropped after an answer, at most.
const LINGER_BYTES: usize = 64 << 10;
/// Time spent dropping them, at most.
const LINGER_TIME: Duration = Duration::from_secs(1);

/// Ends the answer and reads (a bounded amount of) what the peer sent beyond the
/// request head: closing with unread input makes the system reset the connection,
/// and the peer may then lose the answer (an error saying why its request was too
/// long, say) before reading it.
fn linger(conn: &mut Conn) {
    if conn.shutdown_write().is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 4096];
    let mut dropped = 0;
    while dropped < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => dropped += n,
        }
    }
}

/// Why a request head is refused.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// Longer than [`MAX_HEAD`].
    #[error("request head longer than {MAX_HEAD} bytes")]
    TooLong,
    /// Not complete within [`HEAD_TIME`].
    #[error("request head not complete in time")]
    Slow,
    /// Not an HTTP request.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The connection failed or closed first.
    #[error("{0}")]
    Io(io::Error),
}

impl HeadError {
    fn code(&self) -> u16 {
        match self {
            HeadError::TooLong => 431,
            HeadError::Slow => 408,
            HeadError::Malformed(_) | HeadError::Io(_) => 400,
        }
    }
}

/// A request's method and target.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The target's path, without a query.
    pub path: String,
    /// The `Accept` header, empty if none.
    pub accept: String,
}

/// Reads a request head up to its blank line, by `deadline`.
pub fn read_head(conn: &mut impl ReadTimed, deadline: Instant) -> Result<Head, HeadError> {
    let mut buf = [0u8; MAX_HEAD];
    let mut n = 0;
    // Where the blank line may start: bytes before it were searched already (a peer
    // sending a byte at a time costs no rescans).
    let mut from = 0;
    loop {
        let end = find(&buf[from..n], b"\r\n\r\n").or_else(|| find(&buf[from..n], b"\n\n"));
        if let Some(end) = end {
            return parse_head(&buf[..from + end]);
        }
        from = n.saturating_sub(3);
        if n == buf.len() {
            return Err(HeadError::TooLong);
        }
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(HeadError::Slow)?;
        conn.set_timeout(left).map_err(HeadError::Io)?;
        match conn.read(&mut buf[n..]) {
            Ok(0) => {
                return Err(HeadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(k) => n += k,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HeadError::Slow)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

/// A reader whose reads a deadline can bound.
pub trait ReadTimed: Read {
    /// Bounds the next reads by `t`.
    fn set_timeout(&mut self, t: Duration) -> io::Result<()>;
}

impl ReadTimed for Conn {
    fn set_timeout(&mut self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> Result<Head, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("not text"))?;
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "the request line is not METHOD TARGET VERSION",
        ));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed("only HTTP/1.x is spoken here"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Malformed("bad method"));
    }
    if !target.starts_with('/') {
        return Err(HeadError::Malformed("the target must be a path"));
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let accept = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
        .map_or("", |(_, v)| v.trim());
    Ok(Head {
        method: method.to_owned(),
        path: path.to_owned(),
        accept: accept.to_owned(),
    })
}

const INDEX: &str = "vfpgad metrics endpoint\n\n\
    /metrics  OpenMetrics text, for Prometheus\n\
    /status   the same for a person (what `vfpgad status` prints)\n";

/// The response to a request.
fn answer(head: &Head, pages: &dyn Pages) -> Vec<u8> {
    let body_too = match head.method.as_str() {
        "GET" => true,
        "HEAD" => false,
        _ => {
            return response(
                405,
                "text/plain; charset=utf-8",
                "only GET and HEAD are served here\n",
                false,
            )
        }
    };
    if head.path == "/" {
        return response(200, "text/plain; charset=utf-8", INDEX, !body_too);
    }
    match pages.page(&head.path, &head.accept) {
        Some((kind, body)) => response(200, kind, &body, !body_too),
        None => response(
            404,
            "text/plain; charset=utf-8",
            &format!(
                "no page {}; try /metrics or /status\n",
                head.path.escape_debug()
            ),
            !body_too,
        ),
    }
}

fn response(code: u16, kind: &str, body: &str, head_only: bool) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if code == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The inherited metrics socket (`--inherit metrics=FD` from a supervisor), if any.
pub fn take_inherited(inherited: &mut Vec<(String, RawFd)>) -> Option<OwnedFd> {
    let i = inherited.iter().position(|(k, _)| k == INHERIT_KEY)?;
    let (_, fd) = inherited.swap_remove(i);
    // SAFETY: the supervisor passed this descriptor, open and listening, for the
    // metrics endpoint only; removed from the list, it is owned once.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The key a supervisor passes the metrics socket under.
pub const INHERIT_KEY: &str = "metrics";

#[cfg(test)]
mod tests {
    use super::*;

    struct Slow<'a>(&'a [u8], usize);

    impl Read for Slow<'_> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            if self.1 >= self.0.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            b[0] = self.0[self.1];
            self.1 += 1;
            Ok(1)
        }
    }

    impl ReadTimed for Slow<'_> {
        fn set_timeout(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    fn head(bytes: &[u8]) -> Result<Head, HeadError> {
        read_head(
            &mut Slow(bytes, 0),
            Instant::now() + Duration::from_secs(60),
        )
    }

    #[test]
    fn a_scrape_is_read_byte_by_byte() {
        let h = head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n").unwrap();
        assert_eq!(
            h,
            Head {
                method: "GET".into(),
                path: "/metrics".into(),
                accept: "*/*".into(),
            }
        );
    }

    #[test]
    fn hostile_heads_are_refused_with_their_reason() {
        assert!(
            matches!(
                head(b"GET /metrics HTTP/1.1\r\nHost: a\r\n"),
                Err(HeadError::Slow)
            ),
            "never ends"
        );
        assert!(matches!(
            head(&[b'a'; MAX_HEAD + 10]),
            Err(HeadError::TooLong)
        ));
        assert!(matches!(
            head(b"\xff\xfe\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(head(b"GET\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(
            head(b"GET /a HTTP/2\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            head(b"get /a HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            head(b"GET http://x/ HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            head(b"GET /a b HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        let past = read_head(&mut Slow(b"GET / HTTP/1.1\r\n", 0), Instant::now());
        assert!(matches!(past, Err(HeadError::Slow)), "deadline passed");
    }

    struct Fixed;

    impl Pages for Fixed {
        fn page(&self, path: &str, _: &str) -> Option<Page> {
            (path == "/metrics").then(|| ("text/plain", "x 1\n".to_owned()))
        }
    }

    fn text(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn answers_say_what_is_served() {
        let get = |m: &str, p: &str| {
            text(answer(
                &Head {
                    method: m.into(),
                    path: p.into(),
                    accept: String::new(),
                },
                &Fixed,
            ))
        };
        assert!(get("GET", "/metrics").starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(get("GET", "/metrics").ends_with("\r\n\r\nx 1\n"));
        assert!(get("GET", "/metrics").contains("Content-Length: 4\r\n"));
        assert!(get("HEAD", "/metrics").ends_with("Content-Length: 4\r\nConnection: close\r\n\r\n"));
        assert!(get("POST", "/metrics").starts_with("HTTP/1.1 405 "));
        assert!(get("POST", "/metrics").contains("Allow: GET, HEAD\r\n"));
        assert!(get("GET", "/nope").starts_with("HTTP/1.1 404 "));
        assert!(get("GET", "/").contains("/status"));
    }
}
