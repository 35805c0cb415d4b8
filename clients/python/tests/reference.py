"""Independent references for the built-in kernels (docs/protocol.md section 7),
written with numpy and hashlib, never with the client under test."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def vadd_u32(a: Any, b: Any) -> Any:
    return ((a.astype(np.uint64) + b.astype(np.uint64)) & 0xFFFFFFFF).astype(np.uint32)


def vadd_f32(a: Any, b: Any) -> Any:
    return np.add(a, b, dtype=np.float32)


def mmult(a: Any, b: Any, m: int, k: int, n: int) -> Any:
    """Row-major, products and sums each rounded to binary32, summed in k order."""
    a2, b2 = a.reshape(m, k), b.reshape(k, n)
    c = np.zeros((m, n), dtype=np.float32)
    for p in range(k):
        prod = np.multiply(a2[:, p:p + 1], b2[p:p + 1, :], dtype=np.float32)
        c = np.add(c, prod, dtype=np.float32)
    return c.reshape(-1)


def fir(x: Any, taps: Any) -> Any:
    """y[i] = sum taps[j] * x[i-j], modulo 2^32, as i32."""
    full = np.convolve(x.astype(np.int64), taps.astype(np.int64))[: len(x)]
    return (full & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sobel(src: Any, w: int, h: int) -> Any:
    p = src.reshape(h, w).astype(np.int32)
    out = np.zeros((h, w), dtype=np.uint8)
    if w >= 3 and h >= 3:
        gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
        gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
        out[1:-1, 1:-1] = np.minimum(255, np.abs(gx) + np.abs(gy)).astype(np.uint8)
    return out.reshape(-1)
