//! The same messages on a byte stream (TCP with TLS to a board agent, vsock): a request
//! is exactly the device-readable bytes of a chain — header, argument table, input
//! buffers — and its answer is the response followed by the output buffers when the
//! status is OK (`written` bytes; nothing on error). No extra framing: every length
//! follows from the header and the argument table, which are checked before any
//! length is trusted.

use std::io::{self, Read, Write};

use crate::{AbiError, ArgEntry, ChainLayout, Opcode, RequestHeader, Response, Status, MAX_ARGS};

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
        return Err(StreamError::Abi(AbiError::new(
            Status::TooLarge,
            "request larger than this peer accepts",
        )));
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
    w.write_all(&hdr.to_bytes())?;
    for a in args {
        w.write_all(&a.to_bytes())?;
    }
    Ok(())
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
        let mut r = &wire[..];
        match read_request(&mut r, 16) {
            Err(StreamError::Abi(e)) => assert_eq!(e.status, Status::TooLarge),
            other => panic!("{other:?}"),
        }
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
}
