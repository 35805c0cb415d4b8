//! `sobel`: gradient magnitude of an 8-bit grayscale image.
//!
//! For interior pixels, with `p` the source and rows/columns offset by ±1:
//! `gx = (p[y-1][x+1] + 2p[y][x+1] + p[y+1][x+1]) - (p[y-1][x-1] + 2p[y][x-1] + p[y+1][x-1])`,
//! `gy = (p[y+1][x-1] + 2p[y+1][x] + p[y+1][x+1]) - (p[y-1][x-1] + 2p[y-1][x] + p[y-1][x+1])`,
//! `dst = min(255, |gx| + |gy|)`. Border pixels (first/last row and column) are 0.

use super::short;
use crate::{Call, EngineError, SgBuf, SgReader, SgWriter};

/// Pixels per tile: rows are read and written in runs of this many through buffers on
/// the stack, so the arithmetic runs over plain arrays.
const TILE: usize = 256;

fn zeros(mut w: usize, out: &mut SgWriter<'_>) -> Result<(), EngineError> {
    let z = [0u8; TILE];
    while w > 0 {
        let c = w.min(TILE);
        if !out.write_tile(&z[..c]) {
            return Err(short(1));
        }
        w -= c;
    }
    Ok(())
}

fn row<'a>(src: &SgBuf<'a>, y: usize, w: usize) -> Result<SgReader<'a>, EngineError> {
    Ok(src.slice(y * w, w).ok_or(short(0))?.reader())
}

pub(crate) fn run(call: &Call<'_>) -> Result<(), EngineError> {
    let (src, dst) = (call.buf(0)?, call.buf(1)?);
    let (w, h) = (call.count(2)?, call.count(3)?);
    if w == 0 {
        // An empty image, whatever h says (up to u32::MAX rows of nothing).
        return Ok(());
    }
    let mut out = dst.writer();
    // Three source rows, each `[columns x-1 and x of the previous tile | this tile]`.
    let mut rows = [[0u8; TILE + 2]; 3];
    let mut res = [0u8; TILE];
    for y in 0..h {
        if y == 0 || y + 1 == h || w < 3 {
            zeros(w, &mut out)?;
            continue;
        }
        let mut readers = [row(&src, y - 1, w)?, row(&src, y, w)?, row(&src, y + 1, w)?];
        for (r, buf) in readers.iter_mut().zip(&mut rows) {
            if !r.read_tile(&mut buf[..2]) {
                return Err(short(0));
            }
        }
        zeros(1, &mut out)?;
        let mut left = w - 2;
        while left > 0 {
            let c = left.min(TILE);
            for (r, buf) in readers.iter_mut().zip(&mut rows) {
                if !r.read_tile(&mut buf[2..2 + c]) {
                    return Err(short(0));
                }
            }
            let [top, mid, bot] = &rows;
            for (x, v) in res[..c].iter_mut().enumerate() {
                let p = |r: &[u8; TILE + 2], dx: usize| i32::from(r[x + dx]);
                let gx = (p(top, 2) + 2 * p(mid, 2) + p(bot, 2))
                    - (p(top, 0) + 2 * p(mid, 0) + p(bot, 0));
                let gy = (p(bot, 0) + 2 * p(bot, 1) + p(bot, 2))
                    - (p(top, 0) + 2 * p(top, 1) + p(top, 2));
                *v = u8::try_from((gx.abs() + gy.abs()).min(255)).unwrap_or(u8::MAX);
            }
            if !out.write_tile(&res[..c]) {
                return Err(short(1));
            }
            for buf in &mut rows {
                buf.copy_within(c..c + 2, 0);
            }
            left -= c;
        }
        zeros(1, &mut out)?;
    }
    Ok(())
}

/// About ten operations per pixel.
pub(crate) fn cost(call: &Call<'_>) -> u64 {
    let d = |i| call.scalar(i).unwrap_or(0);
    d(2).saturating_mul(d(3)).saturating_mul(10)
}
