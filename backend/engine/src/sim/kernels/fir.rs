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
    // Delay line, each sample stored twice (at `pos` and `pos + t`) so that the last
    // `t` samples are always the contiguous window `line[pos..pos + t]`, newest first:
    // the sum is a plain dot product with the taps. Wrapping sums are exact in any
    // order, so this is the formula bit for bit; the zeros before the first sample
    // stand for the samples before the start.
    let mut line = [0i32; 2 * MAX_TAPS];
    let mut pos = 0usize;
    let taps = &taps[..t];
    // Tiles of samples on the stack: guest memory is read and written a run at a time.
    const TILE: usize = 256;
    let (mut rx, mut wy) = (x.reader(), y.writer());
    let (mut xin, mut yout) = ([0u8; 2 * TILE], [0u8; 4 * TILE]);
    let mut done = 0;
    while done < n {
        let c = (n - done).min(TILE);
        if !rx.read_tile(&mut xin[..2 * c]) {
            return Err(short(0));
        }
        for (s, out) in xin[..2 * c]
            .chunks_exact(2)
            .zip(yout[..4 * c].chunks_exact_mut(4))
        {
            let s = i32::from(i16::from_le_bytes([s[0], s[1]]));
            let mut acc = 0i32;
            if t > 0 {
                pos = if pos == 0 { t - 1 } else { pos - 1 };
                line[pos] = s;
                line[pos + t] = s;
                for (&tap, &v) in taps.iter().zip(&line[pos..pos + t]) {
                    acc = acc.wrapping_add(tap.wrapping_mul(v));
                }
            }
            out.copy_from_slice(&acc.to_le_bytes());
        }
        if !wy.write_tile(&yout[..4 * c]) {
            return Err(short(2));
        }
        done += c;
    }
    Ok(())
}

/// `n·t` multiply-adds.
pub(crate) fn cost(call: &Call<'_>) -> u64 {
    call.scalar(3)
        .unwrap_or(0)
        .saturating_mul(call.scalar(4).unwrap_or(0).max(1))
}
