//! `fir`: direct-form FIR filter over 16-bit samples.
//!
//! `y[i] = Σ_{j=0}^{min(i, t-1)} taps[j] · x[i-j]` where each sample is sign-extended
//! to 32 bits and products and sums wrap modulo 2^32 (a 32-bit accumulator, as in the
//! hardware). Samples before the start count as zero. At most [`MAX_TAPS`] taps: the
//! taps and the delay line live in fixed registers, as in an HLS core.

use super::short;
use crate::{Call, Elem, EngineError};

/// Longest filter.
pub(crate) const MAX_TAPS: usize = 256;

pub(crate) fn run(call: &Call<'_>) -> Result<(), EngineError> {
    let (x, taps_buf, y) = (call.buf(0)?, call.buf(1)?, call.buf(2)?);
    let (n, t) = (call.count(3)?, call.count(4)?);
    if t > MAX_TAPS {
        return Err(EngineError::BadArgument {
            index: 4,
            reason: "more than 256 taps",
        });
    }
    let mut taps = [0i32; MAX_TAPS];
    let mut rt = taps_buf.reader();
    for tap in &mut taps[..t] {
        *tap = i32::read(&mut rt).ok_or(short(1))?;
    }
    // Delay line: `line[head]` is the newest sample, older ones precede it (cyclically).
    let mut line = [0i32; MAX_TAPS];
    let mut head = 0usize;
    let (mut rx, mut wy) = (x.reader(), y.writer());
    for i in 0..n {
        let s = i32::from(i16::read(&mut rx).ok_or(short(0))?);
        let mut acc = 0i32;
        if t > 0 {
            head = if head + 1 == t { 0 } else { head + 1 };
            line[head] = s;
            let mut idx = head;
            for &tap in &taps[..t.min(i + 1)] {
                acc = acc.wrapping_add(tap.wrapping_mul(line[idx]));
                idx = if idx == 0 { t - 1 } else { idx - 1 };
            }
        }
        if !acc.write(&mut wy) {
            return Err(short(2));
        }
    }
    Ok(())
}

/// `n·t` multiply-adds.
pub(crate) fn cost(call: &Call<'_>) -> u64 {
    call.scalar(3)
        .unwrap_or(0)
        .saturating_mul(call.scalar(4).unwrap_or(0).max(1))
}
