//! `sobel`: gradient magnitude of an 8-bit grayscale image.
//!
//! For interior pixels, with `p` the source and rows/columns offset by ±1:
//! `gx = (p[y-1][x+1] + 2p[y][x+1] + p[y+1][x+1]) - (p[y-1][x-1] + 2p[y][x-1] + p[y+1][x-1])`,
//! `gy = (p[y+1][x-1] + 2p[y+1][x] + p[y+1][x+1]) - (p[y-1][x-1] + 2p[y-1][x] + p[y-1][x+1])`,
//! `dst = min(255, |gx| + |gy|)`. Border pixels (first/last row and column) are 0.

use super::short;
use crate::{Call, Elem, EngineError, SgBuf, SgReader};

fn px(r: &mut SgReader<'_>) -> Result<i32, EngineError> {
    u8::read(r).map(i32::from).ok_or(short(0))
}

fn zeros(w: usize, out: &mut crate::SgWriter<'_>) -> Result<(), EngineError> {
    for _ in 0..w {
        if !out.put([0u8]) {
            return Err(short(1));
        }
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
    for y in 0..h {
        if y == 0 || y + 1 == h || w < 3 {
            zeros(w, &mut out)?;
            continue;
        }
        let (mut top, mut mid, mut bot) =
            (row(&src, y - 1, w)?, row(&src, y, w)?, row(&src, y + 1, w)?);
        // Columns x-1 and x of the three rows; x+1 is read each step.
        let mut left = [px(&mut top)?, px(&mut mid)?, px(&mut bot)?];
        let mut centre = [px(&mut top)?, px(&mut mid)?, px(&mut bot)?];
        zeros(1, &mut out)?;
        for _ in 1..w - 1 {
            let right = [px(&mut top)?, px(&mut mid)?, px(&mut bot)?];
            let gx = (right[0] + 2 * right[1] + right[2]) - (left[0] + 2 * left[1] + left[2]);
            let gy = (left[2] + 2 * centre[2] + right[2]) - (left[0] + 2 * centre[0] + right[0]);
            let v = u8::try_from((gx.abs() + gy.abs()).min(255)).unwrap_or(u8::MAX);
            if !out.put([v]) {
                return Err(short(1));
            }
            left = centre;
            centre = right;
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
