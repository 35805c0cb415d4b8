//! The software kernels. Each one computes exactly what docs/protocol.md specifies for
//! the kernel, reading and writing the guest's buffers in place.

pub(super) mod fir;
pub(super) mod mmult;
pub(super) mod sha256;
pub(super) mod sobel;
pub(super) mod vadd;

use crate::EngineError;

/// The error for a buffer that ends before the kernel is done with it. The signature
/// check makes this unreachable; kernels still never index past a buffer.
fn short(index: usize) -> EngineError {
    EngineError::BadArgument {
        index,
        reason: "buffer shorter than its dimensions",
    }
}
