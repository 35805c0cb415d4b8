//! `vadd_u32` and `vadd_f32`: element-wise sums.

use super::short;
use crate::sg::{zip_map_bulk, Bulk};
use crate::{Call, Elem, EngineError};

fn vadd<T: Elem>(
    call: &Call<'_>,
    add: impl Fn(T, T) -> T,
    bulk: Option<Bulk>,
) -> Result<(), EngineError> {
    let n = call.count(3)?;
    let (mut a, mut b) = (call.buf(0)?.reader(), call.buf(1)?.reader());
    let mut c = call.buf(2)?.writer();
    if zip_map_bulk(&mut a, &mut b, &mut c, n, add, bulk) {
        Ok(())
    } else {
        Err(short(2))
    }
}

/// `c[i] = a[i] + b[i]` modulo 2^32.
pub(crate) fn run_u32(call: &Call<'_>) -> Result<(), EngineError> {
    vadd::<u32>(call, u32::wrapping_add, simd::ADD_U32)
}

/// `c[i] = a[i] + b[i]` in IEEE-754 binary32.
pub(crate) fn run_f32(call: &Call<'_>) -> Result<(), EngineError> {
    vadd::<f32>(call, |x, y| x + y, simd::ADD_F32)
}

/// Four lanes at a time with SSE2 (every x86-64 has it): the same sums, bit for bit
/// (`paddd` wraps like `wrapping_add`; `addps` is the IEEE-754 single-precision sum the
/// scalar `+` compiles to, lane by lane, NaNs included). Guest memory is read and
/// written through raw pointers by unaligned vector loads and stores, never through
/// references: a guest changing it meanwhile, or giving overlapping buffers, gets
/// unspecified sums in its own memory, as from the hardware, and nothing else.
#[cfg(target_arch = "x86_64")]
mod simd {
    use core::arch::x86_64::{
        __m128, __m128i, _mm_add_epi32, _mm_add_ps, _mm_loadu_ps, _mm_loadu_si128, _mm_storeu_ps,
        _mm_storeu_si128,
    };

    use crate::sg::Bulk;
    use crate::Elem;

    pub(super) const ADD_U32: Option<Bulk> = Some(add_u32);
    pub(super) const ADD_F32: Option<Bulk> = Some(add_f32);

    /// # Safety
    /// As [`Bulk`]: `k` aligned u32 at each address.
    unsafe fn add_u32(a: *const u8, b: *const u8, out: *mut u8, k: usize) {
        let mut i = 0;
        while i + 4 <= k {
            // SAFETY: elements i..i + 4 lie in each range (the caller's promise);
            // the loads and stores take any alignment.
            unsafe {
                let x = _mm_loadu_si128(a.add(i * 4).cast::<__m128i>());
                let y = _mm_loadu_si128(b.add(i * 4).cast::<__m128i>());
                _mm_storeu_si128(out.add(i * 4).cast::<__m128i>(), _mm_add_epi32(x, y));
            }
            i += 4;
        }
        while i < k {
            // SAFETY: element i lies in each range, aligned (the caller's promise).
            unsafe {
                let s = u32::load(a.add(i * 4)).wrapping_add(u32::load(b.add(i * 4)));
                s.store(out.add(i * 4));
            }
            i += 1;
        }
    }

    /// # Safety
    /// As [`Bulk`]: `k` aligned f32 at each address.
    unsafe fn add_f32(a: *const u8, b: *const u8, out: *mut u8, k: usize) {
        let mut i = 0;
        while i + 4 <= k {
            // SAFETY: as in `add_u32`.
            unsafe {
                let x = _mm_loadu_ps(a.add(i * 4).cast::<f32>());
                let y = _mm_loadu_ps(b.add(i * 4).cast::<f32>());
                let s: __m128 = _mm_add_ps(x, y);
                _mm_storeu_ps(out.add(i * 4).cast::<f32>(), s);
            }
            i += 4;
        }
        while i < k {
            // SAFETY: as in `add_u32`.
            unsafe {
                let s = f32::load(a.add(i * 4)) + f32::load(b.add(i * 4));
                s.store(out.add(i * 4));
            }
            i += 1;
        }
    }
}

/// Elsewhere (the armv7 agent), the element loop.
#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use crate::sg::Bulk;

    pub(super) const ADD_U32: Option<Bulk> = None;
    pub(super) const ADD_F32: Option<Bulk> = None;
}

/// One operation per element.
pub(crate) fn cost(call: &Call<'_>) -> u64 {
    call.scalar(3).unwrap_or(0)
}
