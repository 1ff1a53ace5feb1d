"""Stable train/validation assignment by clip id.

A clip's split is a pure function of its id (and a salt), never of the round, the labeled set
or its size: a clip validated on in one round is never trained on in the next, so validation
scores stay comparable across rounds and early stopping never sees a clip it trained on.
The hash is splitmix64, computed the same way for one id or for an array of ids.
"""

from __future__ import annotations

import hashlib

import numpy as np

from tagloop.errors import InvalidInput

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _salt_key(salt: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(salt.encode(), digest_size=8).digest(), "big"))


def hash_unit_interval(clip_ids: np.ndarray, *, salt: str = "tagloop") -> np.ndarray:
    """``(N,)`` int ids -> ``(N,)`` float64 in [0, 1), uniform and stable (splitmix64)."""
    ids = np.asarray(clip_ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise InvalidInput("clip ids must be a 1-D integer array", code="bad_clip_ids")
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        z = ids.astype(np.int64).view(np.uint64) ^ _salt_key(salt)
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    # Top 53 bits: exactly representable as a float64 fraction.
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _check_fraction(val_fraction: float) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise InvalidInput(
            f"val_fraction must be in [0, 1), got {val_fraction}", code="bad_val_fraction"
        )


def assign_splits(
    clip_ids: np.ndarray, *, val_fraction: float, salt: str = "tagloop"
) -> np.ndarray:
    """``(N,)`` bool, True where the clip is in the validation split."""
    _check_fraction(val_fraction)
    return hash_unit_interval(clip_ids, salt=salt) < val_fraction


def assign_split(clip_id: int, *, val_fraction: float, salt: str = "tagloop") -> str:
    """``"val"`` or ``"train"`` for one clip; the same answer as :func:`assign_splits`."""
    is_val = assign_splits(
        np.asarray([clip_id], dtype=np.int64), val_fraction=val_fraction, salt=salt
    )
    return "val" if bool(is_val[0]) else "train"
