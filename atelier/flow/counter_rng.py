"""Counter-based random numbers: every value is a pure function of (seed, stream, row, position).

A counter-based generator (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3") hashes a
counter instead of advancing a state, so any slice of its numbers is computed on its own, in any order,
for a whole batch in a few tensor ops. Here a row is a training sample's global index, so a sample's
draws are the same in any batch split, on any rank and after a resume, with no generator per sample.

The hash is SplitMix64's output function (Steele, Lea & Flood 2014): row r of a stream is SplitMix64
seeded by the r-th SplitMix64 output of the stream's key, and position j is that generator's j-th
output. It runs on int64 tensors, whose multiplication wraps modulo 2^64 like unsigned arithmetic, so
the integers and the uniforms made from them are the same bits on the CPU and on CUDA. Normals use
Box-Muller in float64, rounded to float32: they match across devices to float64 rounding, which
almost never moves a float32.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor

GOLDEN_GAMMA = 0x9E3779B97F4A7C15  # SplitMix64's increment: 2^64 / golden ratio, odd


def _int64(word: int) -> int:
    """A 64-bit word as the int64 with the same bits."""
    word &= (1 << 64) - 1
    return word - (1 << 64) if word >> 63 else word


def _shift_right(x: Tensor, bits: int) -> Tensor:
    """Logical (unsigned) right shift of int64 words; torch's >> is arithmetic."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix_(x: Tensor) -> Tensor:
    """SplitMix64's finaliser, in place on int64 words x (returned): a bijection of 64-bit words in
    which every output bit depends on every input bit. In place with one scratch tensor, because on
    the CPU allocating a fresh tensor per op costs more than the op."""
    scratch = torch.empty_like(x)
    for shift, multiplier in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, None)):
        torch.bitwise_right_shift(x, shift, out=scratch).bitwise_and_((1 << (64 - shift)) - 1)  # logical shift
        x.bitwise_xor_(scratch)
        if multiplier is not None:
            x.mul_(_int64(multiplier))
    return x


def stream_key(seed: int, stream: str) -> int:
    """A stream's 64-bit key (as int64): distinct names give unrelated numbers under one seed."""
    digest = hashlib.blake2b(f"{seed}/{stream}".encode(), digest_size=8).digest()
    return _int64(int.from_bytes(digest, "little"))


def words(seed: int, stream: str, rows: Tensor, count: int) -> Tensor:
    """[B, count] int64 random words; word j of row b depends only on (seed, stream, rows[b], j)."""
    row_state = mix_(rows.to(torch.int64) * _int64(GOLDEN_GAMMA) + stream_key(seed, stream))  # [B]
    steps = torch.arange(1, count + 1, dtype=torch.int64, device=rows.device) * _int64(GOLDEN_GAMMA)  # [count]
    return mix_(row_state[:, None] + steps)                                                   # [B, count]


def uniform(seed: int, stream: str, rows: Tensor, count: int) -> Tensor:
    """[B, count] float32 uniform in [0, 1): a word's top 24 bits, exactly representable in float32."""
    return _shift_right(words(seed, stream, rows, count), 40).to(torch.float32) * 2.0 ** -24


def normal(seed: int, stream: str, rows: Tensor, count: int) -> Tensor:
    """[B, count] float32 standard normals by Box-Muller, computed in float64. Word k of a row gives its
    values 2k and 2k + 1 from two 32-bit uniforms (so |value| < 6.7: 32 bits reach that far in the tail)."""
    pairs = words(seed, stream, rows, (count + 1) // 2)                                       # [B, P]
    radius = _shift_right(pairs, 32).to(torch.float64).mul_(-(2.0 ** -32)).log1p_().mul_(-2.0).sqrt_()  # [B, P]
    angle = (pairs & 0xFFFFFFFF).to(torch.float64).mul_(2.0 * math.pi * 2.0 ** -32)           # [B, P]
    values = torch.stack([angle.cos().mul_(radius), angle.sin_().mul_(radius)], dim=-1)     # [B, P, 2]
    return values.flatten(1)[:, :count].to(torch.float32)                                     # [B, count]
