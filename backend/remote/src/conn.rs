//! One TLS connection to a board agent, speaking the stream encoding: a request is the
//! header, argument table and inputs; the answer is the response and, when OK, the
//! outputs. Guest buffers are streamed through a small bounce buffer: no copy of a whole
//! request is ever built.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;
use vfpga_engine::{Call, SgBuf};
use vfpga_proto::stream::{
    read_response, write_request, write_request_with, Deadline, StreamError,
};
use vfpga_proto::{
    ArgEntry, ArgKind, DeviceInfo, ElemType, KernelDesc, KernelSig, Opcode, RequestHeader,
    Response, Status, MAX_ARGS,
};

/// Most kernels a board's catalogue may list.
pub const MAX_BOARD_KERNELS: usize = 1024;

/// Size of the bounce buffer guest data passes through on its way to TLS records.
const CHUNK: usize = 64 << 10;

/// Why a remote call failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The link failed or timed out; the connection is unusable.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The board answered with an error status; the connection is fine.
    #[error("board answered {status:?} (detail {detail})")]
    Status {
        /// The status.
        status: Status,
        /// Its detail.
        detail: u32,
    },
    /// The board broke the protocol; the connection is unusable.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl From<StreamError> for ConnError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Closed => ConnError::Io(io::ErrorKind::UnexpectedEof.into()),
            StreamError::Io(e) => ConnError::Io(e),
            StreamError::Abi(e) => ConnError::Protocol(e.to_string()),
            e @ StreamError::TooLarge { .. } => ConnError::Protocol(e.to_string()),
        }
    }
}

impl ConnError {
    /// True for a timeout (as opposed to a dropped link).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ConnError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// Where a request's input bytes come from.
#[derive(Debug)]
pub enum Src<'a> {
    /// Ordinary memory.
    Bytes(&'a [u8]),
    /// A guest buffer.
    Guest(SgBuf<'a>),
}

/// Where a response's output bytes go.
#[derive(Debug)]
pub enum Dst<'a> {
    /// Ordinary memory.
    Bytes(&'a mut [u8]),
    /// A guest buffer.
    Guest(SgBuf<'a>),
}

/// A connection to one board.
pub struct Conn {
    stream: StreamOwned<ClientConnection, Deadline>,
    sessions: HashMap<String, u64>,
    /// The board's bitstream generation the sessions were opened under (see
    /// [`Conn::sync_generation`]).
    generation: u64,
    bounce: Vec<u8>,
    tag: u64,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Connects to `address` and completes the TLS handshake (so a refused certificate
    /// shows here, not on the first request), all within `timeout`. Later calls are
    /// unbounded until [`Conn::set_timeout`].
    pub fn connect(
        address: &str,
        server_name: &str,
        tls: Arc<ClientConfig>,
        timeout: Duration,
    ) -> Result<Self, ConnError> {
        let deadline = Instant::now().checked_add(timeout).ok_or_else(|| {
            ConnError::Protocol(format!("connect timeout {timeout:?} out of range"))
        })?;
        Self::connect_by(address, server_name, tls, deadline)
    }

    /// [`Conn::connect`], finished by `deadline` (connect and handshake together).
    pub fn connect_by(
        address: &str,
        server_name: &str,
        tls: Arc<ClientConfig>,
        deadline: Instant,
    ) -> Result<Self, ConnError> {
        let addr = address.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{address}: no address"))
        })?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnError::Io(io::ErrorKind::TimedOut.into()));
        }
        let explained =
            |e: io::Error| io::Error::new(e.kind(), vfpga_transport::explain(&e, server_name));
        let mut sock = Deadline::new(TcpStream::connect_timeout(&addr, left).map_err(explained)?);
        sock.set(Some(deadline));
        sock.get_ref().set_nodelay(true)?;
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| ConnError::Protocol(format!("server name {server_name:?}: {e}")))?;
        let conn =
            ClientConnection::new(tls, name).map_err(|e| ConnError::Protocol(e.to_string()))?;
        let mut stream = StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(explained)?;
        }
        // Connected: each use bounds itself with `set_timeout`.
        stream.sock.set(None);
        Ok(Self {
            stream,
            sessions: HashMap::new(),
            generation: 0,
            bounce: vec![0; CHUNK],
            tag: 0,
        })
    }

    /// Everything this connection does from now on must end within `t`: the bound is
    /// on the whole exchange, so a board answering a byte at a time cannot stretch it.
    pub fn set_timeout(&mut self, t: Duration) {
        self.stream.sock.set_in(t);
    }

    /// Everything this connection does from now on must end by `deadline`.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.stream.sock.set(Some(deadline));
    }

    /// One request/response exchange.
    pub fn call(
        &mut self,
        op: Opcode,
        session: u64,
        args: &[ArgEntry],
        inputs: &[Src<'_>],
        outputs: &mut [Dst<'_>],
    ) -> Result<Response, ConnError> {
        self.tag = self.tag.wrapping_add(1);
        let hdr = RequestHeader::new(op, self.tag, session, args.len());
        let total: usize = inputs
            .iter()
            .map(|s| match s {
                Src::Bytes(b) => b.len(),
                Src::Guest(g) => g.len(),
            })
            .sum();
        if total <= CHUNK {
            // A small request leaves in one write (one TLS record, one system call):
            // its inputs gathered after the header, in the buffer kept for copies.
            let mut pos = 0;
            for src in inputs {
                let dst = &mut self.bounce[pos..];
                match src {
                    Src::Bytes(b) => dst[..b.len()].copy_from_slice(b),
                    Src::Guest(g) => {
                        if !g.copy_to_slice(&mut dst[..g.len()]) {
                            return Err(ConnError::Protocol("guest buffer".into()));
                        }
                    }
                }
                pos += match src {
                    Src::Bytes(b) => b.len(),
                    Src::Guest(g) => g.len(),
                };
            }
            write_request_with(&mut self.stream, &hdr, args, &[&self.bounce[..total]])?;
            return self.finish(outputs);
        }
        write_request(&mut self.stream, &hdr, args)?;
        for src in inputs {
            match src {
                Src::Bytes(b) => self.stream.write_all(b)?,
                Src::Guest(g) => {
                    let mut pos = 0;
                    while pos < g.len() {
                        let n = (g.len() - pos).min(CHUNK);
                        let piece = g
                            .slice(pos, n)
                            .ok_or_else(|| ConnError::Protocol("guest buffer".into()))?;
                        piece.copy_to_slice(&mut self.bounce[..n]);
                        self.stream.write_all(&self.bounce[..n])?;
                        pos += n;
                    }
                }
            }
        }
        self.finish(outputs)
    }

    /// Sends what is written and reads the answer to the request of `self.tag`,
    /// its outputs into `outputs`.
    fn finish(&mut self, outputs: &mut [Dst<'_>]) -> Result<Response, ConnError> {
        self.stream.flush()?;
        let resp = read_response(&mut self.stream)?;
        if resp.tag != self.tag {
            return Err(ConnError::Protocol(format!(
                "answer for tag {} while waiting for {}",
                resp.tag, self.tag
            )));
        }
        let status = resp
            .status()
            .ok_or_else(|| ConnError::Protocol(format!("unknown status {}", resp.status)))?;
        if status != Status::Ok {
            return Err(ConnError::Status {
                status,
                detail: resp.detail,
            });
        }
        let expected: u64 = outputs
            .iter()
            .map(|d| match d {
                Dst::Bytes(b) => b.len() as u64,
                Dst::Guest(g) => g.len() as u64,
            })
            .sum();
        if resp.written > expected {
            return Err(ConnError::Protocol(format!(
                "board wrote {} bytes into {expected}",
                resp.written
            )));
        }
        let mut left = resp.written;
        for dst in outputs.iter_mut() {
            match dst {
                Dst::Bytes(b) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(b.len());
                    self.stream.read_exact(&mut b[..n])?;
                    left -= n as u64;
                }
                Dst::Guest(g) => {
                    let mut pos = 0;
                    let len = usize::try_from(left).unwrap_or(usize::MAX).min(g.len());
                    while pos < len {
                        let n = (len - pos).min(CHUNK);
                        self.stream.read_exact(&mut self.bounce[..n])?;
                        let piece = g
                            .slice(pos, n)
                            .ok_or_else(|| ConnError::Protocol("guest buffer".into()))?;
                        piece.copy_from_slice(&self.bounce[..n]);
                        pos += n;
                    }
                    left -= len as u64;
                }
            }
        }
        Ok(resp)
    }

    /// A null round trip (health check).
    pub fn nop(&mut self) -> Result<(), ConnError> {
        self.call(Opcode::Nop, 0, &[], &[], &mut []).map(|_| ())
    }

    /// The board's device information.
    pub fn info(&mut self) -> Result<DeviceInfo, ConnError> {
        let mut raw = [0u8; DeviceInfo::SIZE];
        self.call(
            Opcode::GetInfo,
            0,
            &[ArgEntry::output(ElemType::U8, DeviceInfo::SIZE as u64)],
            &[],
            &mut [Dst::Bytes(&mut raw)],
        )?;
        Ok(DeviceInfo::from_bytes(&raw))
    }

    /// The board's kernel catalogue (at most [`MAX_BOARD_KERNELS`]).
    pub fn kernels(&mut self) -> Result<Vec<KernelSig>, ConnError> {
        let mut out = Vec::new();
        let mut page = vec![0u8; 16 * KernelDesc::SIZE];
        loop {
            let resp = self.call(
                Opcode::ListKernels,
                0,
                &[
                    ArgEntry::scalar(ElemType::U32, out.len() as u64),
                    ArgEntry::output(ElemType::U8, page.len() as u64),
                ],
                &[],
                &mut [Dst::Bytes(&mut page)],
            )?;
            let n = usize::try_from(resp.written).unwrap_or(0) / KernelDesc::SIZE;
            for rec in page[..n * KernelDesc::SIZE].chunks_exact(KernelDesc::SIZE) {
                let raw: [u8; KernelDesc::SIZE] = rec
                    .try_into()
                    .map_err(|_| ConnError::Protocol("record".into()))?;
                out.push(
                    KernelSig::from_desc(&KernelDesc::from_bytes(&raw))
                        .map_err(|e| ConnError::Protocol(e.to_string()))?,
                );
            }
            // `value` is the board's total: a board that claims more than it sends, or
            // more than any bitstream holds, must not keep this loop (and the health
            // thread or daemon start-up that runs it) going.
            if resp.value > MAX_BOARD_KERNELS as u64 {
                return Err(ConnError::Protocol(format!(
                    "board lists {} kernels (at most {MAX_BOARD_KERNELS})",
                    resp.value
                )));
            }
            if n == 0 || out.len() as u64 >= resp.value {
                return Ok(out);
            }
        }
    }

    fn named(&mut self, op: Opcode, name: &str) -> Result<Response, ConnError> {
        self.call(
            op,
            0,
            &[ArgEntry::input(ElemType::U8, name.len() as u64)],
            &[Src::Bytes(name.as_bytes())],
            &mut [],
        )
    }

    /// The session for `kernel` on this connection (opened on first use).
    pub fn session(&mut self, kernel: &str) -> Result<u64, ConnError> {
        if let Some(&id) = self.sessions.get(kernel) {
            return Ok(id);
        }
        let id = self.named(Opcode::OpenSession, kernel)?.value;
        self.sessions.insert(kernel.to_owned(), id);
        Ok(id)
    }

    /// Runs `kernel` with a guest call: inputs streamed from, outputs into guest memory.
    pub fn run(&mut self, kernel: &str, call: &Call<'_>) -> Result<Response, ConnError> {
        let session = self.session(kernel)?;
        let args = call.args();
        let mut ins: [Src<'_>; MAX_ARGS] = std::array::from_fn(|_| Src::Bytes(&[]));
        let mut outs: [Dst<'_>; MAX_ARGS] = std::array::from_fn(|_| Dst::Bytes(&mut []));
        let (mut ni, mut no) = (0, 0);
        for (i, a) in args.iter().enumerate() {
            match ArgKind::from_raw(a.kind) {
                Some(ArgKind::In) => {
                    ins[ni] = Src::Guest(
                        call.buf(i)
                            .map_err(|e| ConnError::Protocol(e.to_string()))?,
                    );
                    ni += 1;
                }
                Some(ArgKind::Out) => {
                    outs[no] = Dst::Guest(
                        call.buf(i)
                            .map_err(|e| ConnError::Protocol(e.to_string()))?,
                    );
                    no += 1;
                }
                _ => {}
            }
        }
        let (ins, outs) = (&ins[..ni], &mut outs[..no]);
        match self.call(Opcode::Run, session, args, ins, outs) {
            Err(ConnError::Status {
                status: Status::BadSession,
                ..
            }) => {
                // The board restarted its catalogue: open again once.
                self.sessions.remove(kernel);
                let session = self.session(kernel)?;
                self.call(Opcode::Run, session, args, ins, outs)
            }
            r => r,
        }
    }

    /// Forgets the board sessions opened before the board's bitstream changed (to
    /// `generation`, a count kept by the caller): they name kernels of the old one.
    pub fn sync_generation(&mut self, generation: u64) {
        if self.generation != generation {
            self.sessions.clear();
            self.generation = generation;
        }
    }

    /// Loads bitstream `name` on the board.
    pub fn load(&mut self, name: &str) -> Result<u64, ConnError> {
        let r = self.named(Opcode::LoadBitstream, name)?;
        self.sessions.clear();
        Ok(r.value)
    }

    /// Stores a bitstream (manifest text and file) in the board's library, reporting
    /// progress as (bytes sent, total) after each chunk of the file.
    pub fn upload(
        &mut self,
        name: &str,
        manifest: &str,
        file: &mut dyn Read,
        len: u64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), ConnError> {
        self.tag = self.tag.wrapping_add(1);
        let args = [
            ArgEntry::input(ElemType::U8, name.len() as u64),
            ArgEntry::input(ElemType::U8, manifest.len() as u64),
            ArgEntry::input(ElemType::U8, len),
        ];
        let hdr = RequestHeader::new(Opcode::UploadBitstream, self.tag, 0, args.len());
        write_request(&mut self.stream, &hdr, &args)?;
        self.stream.write_all(name.as_bytes())?;
        self.stream.write_all(manifest.as_bytes())?;
        let mut sent = 0u64;
        progress(0, len);
        while sent < len {
            let n = usize::try_from(len - sent).unwrap_or(usize::MAX).min(CHUNK);
            file.read_exact(&mut self.bounce[..n])?;
            self.stream.write_all(&self.bounce[..n])?;
            sent += n as u64;
            progress(sent, len);
        }
        self.stream.flush()?;
        let resp = read_response(&mut self.stream)?;
        match resp.status() {
            Some(Status::Ok) => Ok(()),
            Some(status) => Err(ConnError::Status {
                status,
                detail: resp.detail,
            }),
            None => Err(ConnError::Protocol(format!(
                "unknown status {}",
                resp.status
            ))),
        }
    }
}
