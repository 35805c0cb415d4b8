//! `vadd_u32` and `vadd_f32`: element-wise sums.

use super::short;
use crate::sg::zip_map;
use crate::{Call, Elem, EngineError};

fn vadd<T: Elem>(call: &Call<'_>, add: impl Fn(T, T) -> T) -> Result<(), EngineError> {
    let n = call.count(3)?;
    let (mut a, mut b) = (call.buf(0)?.reader(), call.buf(1)?.reader());
    let mut c = call.buf(2)?.writer();
    if zip_map(&mut a, &mut b, &mut c, n, add) {
        Ok(())
    } else {
        Err(short(2))
    }
}

/// `c[i] = a[i] + b[i]` modulo 2^32.
pub(crate) fn run_u32(call: &Call<'_>) -> Result<(), EngineError> {
    vadd::<u32>(call, u32::wrapping_add)
}

/// `c[i] = a[i] + b[i]` in IEEE-754 binary32.
pub(crate) fn run_f32(call: &Call<'_>) -> Result<(), EngineError> {
    vadd::<f32>(call, |x, y| x + y)
}

/// One operation per element.
pub(crate) fn cost(call: &Call<'_>) -> u64 {
    call.scalar(3).unwrap_or(0)
}
