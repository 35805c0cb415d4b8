//! `mmult`: row-major single-precision matrix product.
//!
//! `c[i][j]` is the sum over `p = 0..k` of `a[i][p] * b[p][j]`, accumulated in `p`
//! order from +0.0, each product and each sum rounded to binary32 (no fused
//! multiply-add). The loops run `i, p, j` so `a` and the rows of `b` and `c` are read
//! sequentially; for each `c[i][j]` the additions still happen in `p` order, so the
//! result is the textbook one bit for bit.

use super::short;
use crate::{Call, Elem, EngineError};

pub(crate) fn run(call: &Call<'_>) -> Result<(), EngineError> {
    let (a, b, c) = (call.buf(0)?, call.buf(1)?, call.buf(2)?);
    let (m, k, n) = (call.count(3)?, call.count(4)?, call.count(5)?);
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
            let mut rb = b.slice(p * row, row).ok_or(short(1))?.reader();
            let mut rc = c_row.reader();
            let mut wc = c_row.writer();
            for _ in 0..n {
                let y = f32::read(&mut rb).ok_or(short(1))?;
                let acc = if p == 0 {
                    0.0
                } else {
                    f32::read(&mut rc).ok_or(short(2))?
                };
                if !(acc + x * y).write(&mut wc) {
                    return Err(short(2));
                }
            }
        }
    }
    Ok(())
}

/// `m·k·n` multiply-adds.
pub(crate) fn cost(call: &Call<'_>) -> u64 {
    let d = |i| call.scalar(i).unwrap_or(0);
    d(3).saturating_mul(d(4)).saturating_mul(d(5))
}
