//! `mmult`: row-major single-precision matrix product.
//!
//! `c[i][j]` is the sum over `p = 0..k` of `a[i][p] * b[p][j]`, accumulated in `p`
//! order from +0.0, each product and each sum rounded to binary32 (no fused
//! multiply-add). The loops run `i, p, j` so `a` and the rows of `b` and `c` are read
//! sequentially; for each `c[i][j]` the additions still happen in `p` order, so the
//! result is the textbook one bit for bit.

use super::short;
use crate::sg::zip_map;
use crate::{Call, Elem, EngineError};

pub(crate) fn run(call: &Call<'_>) -> Result<(), EngineError> {
    let (a, b, c) = (call.buf(0)?, call.buf(1)?, call.buf(2)?);
    let (m, k, n) = (call.count(3)?, call.count(4)?, call.count(5)?);
    if n == 0 {
        // c is empty: nothing to compute (and m alone, up to u32::MAX with every buffer
        // empty, must not set a loop spinning).
        return Ok(());
    }
    let row = n.checked_mul(4).ok_or(short(2))?;
    let mut ra = a.reader();
    for i in 0..m {
        let c_row = c.slice(i * row, row).ok_or(short(2))?;
        if k == 0 {
            let mut w = c_row.writer();
            for _ in 0..n {
                if !0.0f32.write(&mut w) {
                    return Err(short(2));
                }
            }
            continue;
        }
        for p in 0..k {
            let x = f32::read(&mut ra).ok_or(short(0))?;
            let b_row = b.slice(p * row, row).ok_or(short(1))?;
            let mut wc = c_row.writer();
            // The first product is added to +0.0, not to whatever `c` held: read the
            // b row as a dummy accumulator then.
            let first = p == 0;
            let mut acc = if first {
                b_row.reader()
            } else {
                c_row.reader()
            };
            let step = |acc: f32, y: f32| if first { 0.0 + x * y } else { acc + x * y };
            if !zip_map(&mut acc, &mut b_row.reader(), &mut wc, n, step) {
                return Err(short(2));
            }
        }
    }
    Ok(())
}

/// `m·k·n` multiply-adds (a zero `k` still writes `m·n` zeros).
pub(crate) fn cost(call: &Call<'_>) -> u64 {
    let d = |i| call.scalar(i).unwrap_or(0);
    d(3).saturating_mul(d(4).max(1)).saturating_mul(d(5))
}
