//! `mmult`: row-major single-precision matrix product.
//!
//! `c[i][j]` is the sum over `p = 0..k` of `a[i][p] * b[p][j]`, accumulated in `p`
//! order from +0.0, each product and each sum rounded to binary32 (no fused
//! multiply-add). The loops run over tiles of `c`'s row `i` kept on the stack: for each
//! `p`, a tile of `b`'s row `p` is read sequentially and added in, so each `c[i][j]`
//! still sums in `p` order (the textbook result bit for bit), the arithmetic runs over
//! plain arrays, and `c` is written once.

use super::short;
use crate::{Call, EngineError};

/// Columns of `c` per tile.
const TILE: usize = 256;

pub(crate) fn run(call: &Call<'_>) -> Result<(), EngineError> {
    let (a, b, c) = (call.buf(0)?, call.buf(1)?, call.buf(2)?);
    let (m, k, n) = (call.count(3)?, call.count(4)?, call.count(5)?);
    if n == 0 {
        // c is empty: nothing to compute (and m alone, up to u32::MAX with every buffer
        // empty, must not set a loop spinning).
        return Ok(());
    }
    let row = n.checked_mul(4).ok_or(short(2))?;
    let a_row = k.checked_mul(4).ok_or(short(0))?;
    let mut acc = [0f32; TILE];
    let mut bytes = [0u8; 4 * TILE];
    let mut wc = c.writer();
    for i in 0..m {
        let a_i = a.slice(i * a_row, a_row).ok_or(short(0))?;
        let mut j0 = 0;
        while j0 < n {
            let w = (n - j0).min(TILE);
            // +0.0 plus the first product is the first product, except that -0.0
            // becomes +0.0: start from +0.0 and add every product, as the formula says.
            acc[..w].fill(0.0);
            let mut ra = a_i.reader();
            // Down the tile's columns of b, row after row: a tile, then a skip to the
            // same columns of the next row.
            // (With k = 0 no row of b is read: b may be empty.)
            let mut rb = match k {
                0 => b.reader(),
                _ => {
                    let left = b.len().checked_sub(j0 * 4).ok_or(short(1))?;
                    b.slice(j0 * 4, left).ok_or(short(1))?.reader()
                }
            };
            for p in 0..k {
                let x = f32::from_le_bytes(ra.take::<4>().ok_or(short(0))?);
                if (p > 0 && !rb.skip(row - w * 4)) || !rb.read_tile(&mut bytes[..4 * w]) {
                    return Err(short(1));
                }
                for (s, y) in acc[..w].iter_mut().zip(bytes[..4 * w].chunks_exact(4)) {
                    *s += x * f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
                }
            }
            for (s, out) in acc[..w].iter().zip(bytes[..4 * w].chunks_exact_mut(4)) {
                out.copy_from_slice(&s.to_le_bytes());
            }
            if !wc.write_tile(&bytes[..4 * w]) {
                return Err(short(2));
            }
            j0 += w;
        }
    }
    Ok(())
}

/// `m·k·n` multiply-adds (a zero `k` still writes `m·n` zeros).
pub(crate) fn cost(call: &Call<'_>) -> u64 {
    let d = |i| call.scalar(i).unwrap_or(0);
    d(3).saturating_mul(d(4).max(1)).saturating_mul(d(5))
}
