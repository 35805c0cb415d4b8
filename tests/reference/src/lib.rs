//! Independent references for every vfpga kernel, written as plainly as possible on
//! ordinary slices (and the `sha2` crate for SHA-256), and deterministic test data.
//! Tests compare engine, daemon and guest results with these; none of this code is
//! shared with the implementations under test.
#![allow(clippy::cast_possible_truncation, missing_docs)]

/// xorshift64*: deterministic test data without a dependency.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

pub fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

pub fn vadd_u32(a: &[u32], b: &[u32]) -> Vec<u32> {
    a.iter().zip(b).map(|(x, y)| x.wrapping_add(*y)).collect()
}

pub fn vadd_f32(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

pub fn mmult(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f32;
            for p in 0..k {
                acc += a[i * k + p] * b[p * n + j];
            }
            c[i * n + j] = acc;
        }
    }
    c
}

pub fn fir(x: &[i16], taps: &[i32]) -> Vec<i32> {
    (0..x.len())
        .map(|i| {
            (0..taps.len()).filter(|&j| j <= i).fold(0i32, |acc, j| {
                acc.wrapping_add(taps[j].wrapping_mul(i32::from(x[i - j])))
            })
        })
        .collect()
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

pub fn sobel(img: &[u8], w: usize, h: usize) -> Vec<u8> {
    let p = |x: usize, y: usize| i32::from(img[y * w + x]);
    let mut out = vec![0u8; w * h];
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let gx = p(x + 1, y - 1) + 2 * p(x + 1, y) + p(x + 1, y + 1)
                - p(x - 1, y - 1)
                - 2 * p(x - 1, y)
                - p(x - 1, y + 1);
            let gy = p(x - 1, y + 1) + 2 * p(x, y + 1) + p(x + 1, y + 1)
                - p(x - 1, y - 1)
                - 2 * p(x, y - 1)
                - p(x + 1, y - 1);
            out[y * w + x] = (gx.abs() + gy.abs()).min(255) as u8;
        }
    }
    out
}
