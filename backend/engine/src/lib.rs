//! Engines execute kernels on guest buffers. One trait, several implementations: the
//! bit-exact software model ([`sim::SimEngine`], the embedded default), local
//! programmable logic and remote boards.
//!
//! The daemon decodes a request, checks its arguments against the kernel signature and
//! hands the engine a [`Call`]: scalars from the argument table and [`SgBuf`] views of
//! the guest's buffers, read and written in place.

pub mod library;
pub mod manifest;
pub mod pl;
pub mod sg;
pub mod sim;

use std::sync::Arc;

use vfpga_proto::{ArgEntry, ArgKind, Status, MAX_ARGS};

pub use library::Library;
pub use manifest::{Catalog, Kernel, ManifestError};
pub use sg::{Elem, RawSeg, SegStream, SgBuf, SgReader, SgWriter};

/// Why an engine could not run a kernel or load a bitstream.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An argument value the kernel cannot accept (beyond what the signature checks).
    #[error("argument {index}: {reason}")]
    BadArgument {
        /// Argument index.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The kernel is not part of the loaded bitstream any more.
    #[error("kernel `{0}` is not loaded")]
    KernelGone(String),
    /// No such bitstream in the library.
    #[error("no bitstream `{0}` in the library")]
    UnknownBitstream(String),
    /// Refused by policy.
    #[error("not permitted: {0}")]
    Permission(String),
    /// The engine cannot do this.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// Out of execution resources.
    #[error("engine busy")]
    Busy,
    /// The kernel did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The link to a remote board is down.
    #[error("link down: {0}")]
    LinkDown(String),
    /// Engine or I/O failure, with context.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Engine failure without an I/O error behind it.
    #[error("{0}")]
    Failed(String),
}

impl EngineError {
    /// Status and detail for the response.
    pub fn status(&self) -> (Status, u32) {
        match self {
            EngineError::BadArgument { index, .. } => (
                Status::BadArgument,
                u32::try_from(*index).unwrap_or(u32::MAX),
            ),
            EngineError::KernelGone(_) | EngineError::UnknownBitstream(_) => {
                (Status::UnknownKernel, 0)
            }
            EngineError::Permission(_) => (Status::Permission, 0),
            EngineError::Unsupported(_) => (Status::Unsupported, 0),
            EngineError::Busy => (Status::Busy, 0),
            EngineError::Timeout(_) => (Status::Timeout, 0),
            EngineError::LinkDown(_) => (Status::LinkDown, 0),
            EngineError::Io { .. } | EngineError::Failed(_) => (Status::EngineError, 0),
        }
    }

    /// An I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Arguments of one kernel run, already checked against the kernel's signature.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    args: &'a [ArgEntry],
    bufs: &'a [Option<SgBuf<'a>>; MAX_ARGS],
}

impl<'a> Call<'a> {
    /// A call with argument table `args`; `bufs[i]` is the view of argument `i` when it
    /// is a buffer.
    pub fn new(args: &'a [ArgEntry], bufs: &'a [Option<SgBuf<'a>>; MAX_ARGS]) -> Self {
        Self { args, bufs }
    }

    /// The argument table.
    pub fn args(&self) -> &'a [ArgEntry] {
        self.args
    }

    /// Bits of scalar argument `i`.
    pub fn scalar(&self, i: usize) -> Result<u64, EngineError> {
        match self.args.get(i) {
            Some(a) if a.kind == ArgKind::Scalar.raw() => Ok(a.value),
            _ => Err(EngineError::BadArgument {
                index: i,
                reason: "not a scalar",
            }),
        }
    }

    /// Scalar argument `i` as a count (an index or length for this host).
    pub fn count(&self, i: usize) -> Result<usize, EngineError> {
        usize::try_from(self.scalar(i)?).map_err(|_| EngineError::BadArgument {
            index: i,
            reason: "value too large for this host",
        })
    }

    /// Buffer argument `i`.
    pub fn buf(&self, i: usize) -> Result<SgBuf<'a>, EngineError> {
        self.bufs
            .get(i)
            .copied()
            .flatten()
            .ok_or(EngineError::BadArgument {
                index: i,
                reason: "not a buffer",
            })
    }

    /// Bytes of input buffers and of output buffers.
    pub fn io_bytes(&self) -> (u64, u64) {
        let mut io = (0, 0);
        for a in self.args {
            match ArgKind::from_raw(a.kind) {
                Some(ArgKind::In) => io.0 += a.value,
                Some(ArgKind::Out) => io.1 += a.value,
                _ => {}
            }
        }
        io
    }
}

/// What the engine is, for `GET_INFO` and the config space.
#[derive(Clone, Debug)]
pub struct EngineInfo {
    /// Short name: "sim", "pl", "remote".
    pub name: &'static str,
    /// `CAP_ENGINE_*` bit.
    pub capability: u64,
    /// Whether `load_bitstream` can succeed at all.
    pub can_load: bool,
}

/// One board behind an engine that forwards to boards (the remote engine).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoardHealth {
    /// The board's configured name.
    pub name: String,
    /// Whether its last check or request went through.
    pub up: bool,
    /// Why it is down (empty when it is up or never failed).
    pub last_error: String,
}

/// An accelerator back end.
pub trait Engine: Send + Sync + std::fmt::Debug {
    /// Name and capabilities.
    fn info(&self) -> EngineInfo;

    /// The boards the engine forwards to and their health; none for an engine that
    /// runs here.
    fn boards(&self) -> Vec<BoardHealth> {
        Vec::new()
    }

    /// The kernels available now.
    fn catalog(&self) -> Arc<Catalog>;

    /// Runs `kernel` (from [`Engine::catalog`]) on `call`, whose arguments match its
    /// signature. Must not panic on any argument values.
    fn run(&self, kernel: &Kernel, call: &Call<'_>) -> Result<(), EngineError>;

    /// Estimated work of a run, in element operations; the daemon runs cheap calls on
    /// the queue's own thread and hands expensive ones to its engine threads so they do
    /// not hold up the queue.
    fn cost(&self, kernel: &Kernel, call: &Call<'_>) -> u64;

    /// Replaces the catalogue with the bitstream `name` from the engine's library.
    fn load_bitstream(&self, name: &str) -> Result<Arc<Catalog>, EngineError>;

    /// The catalogue of bitstream `name`, loading it only if another is loaded (two
    /// callers at once may both load it: engines that program hardware check again
    /// once they hold the fabric).
    fn ensure_loaded(&self, name: &str) -> Result<Arc<Catalog>, EngineError> {
        let c = self.catalog();
        if c.name == name {
            return Ok(c);
        }
        self.load_bitstream(name)
    }

    /// Runs kernel `kernel` of bitstream `bitstream`, loading the bitstream first if
    /// another is loaded (time-sharing the fabric: the daemon's scheduler batches runs
    /// by bitstream so this loads rarely).
    fn run_in(&self, bitstream: &str, kernel: &str, call: &Call<'_>) -> Result<(), EngineError> {
        // Another time-shared run may reprogram between the load and the run: the run
        // then finds its kernel gone and goes round again, a bounded number of times.
        for _ in 0..3 {
            let catalog = self.ensure_loaded(bitstream)?;
            let k = catalog
                .find(kernel)
                .ok_or_else(|| EngineError::KernelGone(format!("{bitstream}/{kernel}")))?;
            match self.run(k, call) {
                Err(EngineError::KernelGone(_)) => continue,
                r => return r,
            }
        }
        Err(EngineError::Failed(format!(
            "bitstream {bitstream} was replaced under {kernel} three times in a row"
        )))
    }
}
