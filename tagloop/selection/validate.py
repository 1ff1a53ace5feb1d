"""Input checks shared by the selection functions.

Every check raises :class:`tagloop.errors.InvalidInput` with a code a caller can act on:

- ``invalid_probabilities``: wrong shape, NaN/inf, values outside [0, 1], a group summing past 1
- ``invalid_scores``: scores that are not a finite 1-D float array of the right length
- ``invalid_ids``: clip ids that are not 1-D integers, or are repeated
- ``invalid_embeddings``: embeddings/descriptors that are not a finite ``(N, D)`` matrix
- ``invalid_counts``: per-tag label counts that are not a finite, non-negative ``(K,)`` vector
- ``invalid_columns``: column indices that are not 1-D integers in ``[0, K)``
- ``invalid_argument``: an option out of range (a batch size of 0, an unknown combine rule)
"""

from __future__ import annotations

import numpy as np

from tagloop.errors import InvalidInput

# float32 softmax/sigmoid outputs can land a hair outside [0, 1] or off a sum of 1.
RANGE_TOLERANCE = 1e-6
SUM_TOLERANCE = 1e-3


def _as_float_array(x: object, *, name: str, code: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be a numeric array ({exc})", code=code) from exc
    return arr


def _check_finite(arr: np.ndarray, *, name: str, code: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InvalidInput(
            f"{name} has {int(bad.sum())} NaN or infinite value(s), the first at index {first}",
            code=code,
        )


def check_probabilities(x: object, *, name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """A finite float64 array of probabilities in [0, 1] whose shape matches ``shape``.

    ``shape`` lists the expected size of each axis, None where any size is fine. Values within
    ``RANGE_TOLERANCE`` of the range are clipped into it.
    """
    code = "invalid_probabilities"
    arr = _as_float_array(x, name=name, code=code)
    if arr.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(arr.shape, shape, strict=True)
    ):
        want_text = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise InvalidInput(f"{name} has shape {arr.shape}, expected {want_text}", code=code)
    _check_finite(arr, name=name, code=code)
    if arr.size and (arr.min() < -RANGE_TOLERANCE or arr.max() > 1 + RANGE_TOLERANCE):
        raise InvalidInput(
            f"{name} must hold probabilities in [0, 1], found values in "
            f"[{arr.min():.6g}, {arr.max():.6g}] (logits instead of probabilities?)",
            code=code,
        )
    return np.clip(arr, 0.0, 1.0)


def check_group_sums(probs: np.ndarray, *, name: str, group: str) -> None:
    """The tags of a group ``(..., C)`` must sum to at most 1: what they leave is the group's
    implicit "none" (``tagloop.none_outcome``)."""
    sums = probs.sum(axis=-1)
    off = sums - 1.0 > SUM_TOLERANCE
    if off.any():
        first = tuple(int(i) for i in np.argwhere(off)[0])
        raise InvalidInput(
            f"{name}: the columns of mutually exclusive group {group!r} must sum to at most 1 "
            f"(one softmax with 'none'), but {int(off.sum())} row(s) do not, e.g. at {first} "
            f"the sum is {float(sums[first]):.6g}",
            code="invalid_probabilities",
        )


def check_scores(x: object, *, n: int | None = None, name: str = "scores") -> np.ndarray:
    """A finite float64 vector ``(N,)``; ``n`` is the expected length when given."""
    code = "invalid_scores"
    arr = _as_float_array(x, name=name, code=code)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = "(N,)" if n is None else f"({n},)"
        raise InvalidInput(f"{name} has shape {arr.shape}, expected {want}", code=code)
    _check_finite(arr, name=name, code=code)
    return arr


def check_ids(
    x: object, *, n: int | None = None, name: str = "clip_ids", unique: bool = True
) -> np.ndarray:
    """An int64 vector ``(N,)`` of ids, repeated ids rejected when ``unique``."""
    code = "invalid_ids"
    arr = np.asarray(x)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = "(N,)" if n is None else f"({n},)"
        raise InvalidInput(f"{name} has shape {arr.shape}, expected {want}", code=code)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInput(f"{name} must be integers, got dtype {arr.dtype}", code=code)
    arr = arr.astype(np.int64, copy=False)
    if unique and arr.size:
        sorted_ids = np.sort(arr)
        dup = sorted_ids[1:] == sorted_ids[:-1]
        if dup.any():
            raise InvalidInput(
                f"{name} must be unique, but {int(sorted_ids[1:][dup][0])} is repeated",
                code=code,
            )
    return arr


def check_matrix(x: object, *, n: int, name: str) -> np.ndarray:
    """A finite float64 matrix ``(N, D)`` with ``D >= 1``."""
    code = "invalid_embeddings"
    arr = _as_float_array(x, name=name, code=code)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 1:
        raise InvalidInput(f"{name} has shape {arr.shape}, expected ({n}, D)", code=code)
    _check_finite(arr, name=name, code=code)
    return arr


def check_matrix_rows(x: object, *, n: int, rows: np.ndarray, name: str) -> np.ndarray:
    """Rows ``rows`` of an ``(N, D)`` matrix as a checked float64 ``(len(rows), D)`` matrix.

    Only the rows used are converted and checked, so a float32 pool of millions of embeddings
    is never copied whole.
    """
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise InvalidInput(
            f"{name} has shape {arr.shape}, expected ({n}, D)", code="invalid_embeddings"
        )
    return check_matrix(arr[rows], n=rows.shape[0], name=name)


def encode_groups(x: object, *, n: int, name: str = "video_ids") -> np.ndarray:
    """Dense int64 codes ``(N,)`` for any 1-D array of labels (ints or strings)."""
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InvalidInput(f"{name} has shape {arr.shape}, expected ({n},)", code="invalid_ids")
    try:
        _, codes = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise InvalidInput(f"{name} must be sortable labels ({exc})", code="invalid_ids") from exc
    return codes.astype(np.int64).reshape(-1)


def check_counts(x: object, *, k: int | None = None, name: str = "tag_counts") -> np.ndarray:
    """A finite, non-negative float64 vector ``(K,)`` of per-tag label counts."""
    code = "invalid_counts"
    arr = _as_float_array(x, name=name, code=code)
    if arr.ndim != 1 or (k is not None and arr.shape[0] != k):
        want = "(K,)" if k is None else f"({k},)"
        raise InvalidInput(f"{name} has shape {arr.shape}, expected {want}", code=code)
    _check_finite(arr, name=name, code=code)
    if arr.size and arr.min() < 0:
        raise InvalidInput(f"{name} must be >= 0, found {arr.min():.6g}", code=code)
    return arr


def check_columns(x: object, *, k: int, name: str = "columns") -> np.ndarray:
    """An int64 vector ``(T,)`` of column indices in ``[0, K)`` (repeats are harmless)."""
    code = "invalid_columns"
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InvalidInput(f"{name} has shape {arr.shape}, expected (T,)", code=code)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInput(f"{name} must be integers, got dtype {arr.dtype}", code=code)
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= k):
        raise InvalidInput(
            f"{name} must lie in [0, {k}), found [{arr.min()}, {arr.max()}]", code=code
        )
    return arr


def check_positive_int(x: object, *, name: str) -> int:
    """``x`` as an int >= 1 (bools refused)."""
    if isinstance(x, bool) or not isinstance(x, int | np.integer) or int(x) < 1:
        raise InvalidInput(f"{name} must be an integer >= 1, got {x!r}", code="invalid_argument")
    return int(x)
