//! `vfpgad status`: fetches a page of the metrics endpoint and gives its body.
//!
//! An HTTP/1.1 `GET` with `Connection: close`, read to its end: the answer is bounded
//! ([`MAX_ANSWER`]) and must come within the caller's time, whatever answers there.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use super::http::{Addr, ReadTimed};

/// Longest answer read.
pub const MAX_ANSWER: usize = 16 << 20;

/// Why no page came.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered at the address.
    #[error("cannot reach the metrics endpoint at {addr}: {source} (is vfpgad running with --metrics {addr} or [metrics] listen = \"{addr}\"?)")]
    Connect {
        /// Where.
        addr: Addr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The answer did not come in time.
    #[error("the metrics endpoint at {0} did not answer within {1:?}")]
    Slow(Addr, Duration),
    /// The connection failed midway.
    #[error("reading from the metrics endpoint at {addr}: {source}")]
    Io {
        /// Where.
        addr: Addr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Longer than [`MAX_ANSWER`].
    #[error(
        "the answer from {0} is longer than {MAX_ANSWER} bytes: is that a vfpgad metrics endpoint?"
    )]
    TooLong(Addr),
    /// Not an HTTP answer, or a cut one.
    #[error("the answer from {0} is not one a vfpgad metrics endpoint gives: {1}")]
    Malformed(Addr, &'static str),
    /// An HTTP error.
    #[error("the metrics endpoint at {0} answered {1}: {2}")]
    Status(Addr, u16, String),
}

/// `GET path` from `addr`, within `timeout`: the answer's body.
pub fn get(addr: &Addr, path: &str, timeout: Duration) -> Result<String, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut conn = addr
        .connect(timeout)
        .map_err(|source| ClientError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let io_err = |source| ClientError::Io {
        addr: addr.clone(),
        source,
    };
    conn.set_write_timeout(Some(timeout)).map_err(io_err)?;
    // One write: a server that answers the first bytes must not cut a second one.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: vfpgad/{}\r\n\
         Accept: application/openmetrics-text; version=1.0.0, text/plain; q=0.5\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    conn.write_all(request.as_bytes()).map_err(io_err)?;
    let raw = read_all(&mut conn, deadline).map_err(|e| match e {
        ReadError::Slow => ClientError::Slow(addr.clone(), timeout),
        ReadError::TooLong => ClientError::TooLong(addr.clone()),
        ReadError::Io(source) => ClientError::Io {
            addr: addr.clone(),
            source,
        },
    })?;
    parse(&raw).map_err(|e| match e {
        AnswerError::Malformed(why) => ClientError::Malformed(addr.clone(), why),
        AnswerError::Status(code, body) => ClientError::Status(addr.clone(), code, body),
    })
}

enum ReadError {
    Slow,
    TooLong,
    Io(io::Error),
}

fn read_all(conn: &mut impl ReadTimed, deadline: Instant) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(ReadError::Slow)?;
        conn.set_timeout(left).map_err(ReadError::Io)?;
        match conn.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                if out.len() + n > MAX_ANSWER {
                    return Err(ReadError::TooLong);
                }
                out.extend_from_slice(&buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadError::Slow)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Why an answer is not a page.
#[derive(Debug, PartialEq, Eq)]
pub enum AnswerError {
    /// Not HTTP, or cut.
    Malformed(&'static str),
    /// An HTTP status other than 200, with the start of the body.
    Status(u16, String),
}

/// The body of a whole HTTP/1.x answer (read to the connection's end).
pub fn parse(raw: &[u8]) -> Result<String, AnswerError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(AnswerError::Malformed("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end])
        .map_err(|_| AnswerError::Malformed("headers are not text"))?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(AnswerError::Malformed("not an HTTP/1.x answer"));
    }
    let code = parts.next().unwrap_or_default();
    let code: u16 = code
        .parse()
        .ok()
        .filter(|c| (100..600).contains(c))
        .ok_or(AnswerError::Malformed("no status code"))?;
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            return Err(AnswerError::Malformed("a header without a colon"));
        };
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .trim()
                .parse()
                .map_err(|_| AnswerError::Malformed("Content-Length is not a number"))?;
            if n != body.len() {
                return Err(AnswerError::Malformed(
                    "the body is not as long as Content-Length says (cut short?)",
                ));
            }
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(AnswerError::Malformed(
                "a Transfer-Encoding vfpgad does not use",
            ));
        }
    }
    let text = String::from_utf8_lossy(body).into_owned();
    if code != 200 {
        let excerpt: String = text.trim().chars().take(200).collect();
        return Err(AnswerError::Status(code, excerpt));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_page_is_its_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(parse(raw), Ok("abc".into()));
        assert_eq!(
            parse(b"HTTP/1.0 200 OK\r\n\r\nno length"),
            Ok("no length".into())
        );
    }

    #[test]
    fn hostile_answers_are_refused_with_their_reason() {
        let m = |r: &[u8]| match parse(r) {
            Err(AnswerError::Malformed(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(m(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").contains("cut short"));
        assert!(m(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nabc").contains("Content-Length"));
        assert!(m(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").contains("number"));
        assert!(
            m(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n")
                .contains("number")
        );
        assert!(m(b"HTTP/1.1 200 OK\r\nContent-Type: a").contains("end of headers"));
        assert!(m(b"SSH-2.0-OpenSSH\r\n\r\n").contains("HTTP"));
        assert!(m(b"HTTP/1.1 abc\r\n\r\n").contains("status code"));
        assert!(m(b"HTTP/1.1 999 x\r\n\r\n").contains("status code"));
        assert!(m(b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n").contains("colon"));
        assert!(m(b"HTTP/1.1 200 OK\r\n\xff: x\r\n\r\n").contains("text"));
        assert!(
            m(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
                .contains("Transfer-Encoding")
        );
        assert_eq!(
            parse(b"HTTP/1.1 404 Not Found\r\n\r\nno page /x\n"),
            Err(AnswerError::Status(404, "no page /x".into()))
        );
    }

    struct Endless;

    impl Read for Endless {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            b.fill(b'x');
            Ok(b.len())
        }
    }

    impl ReadTimed for Endless {
        fn set_timeout(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_endless_answer_is_cut_at_the_bound() {
        let far = Instant::now() + Duration::from_secs(3600);
        assert!(matches!(
            read_all(&mut Endless, far),
            Err(ReadError::TooLong)
        ));
    }
}
