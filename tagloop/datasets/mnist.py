"""Read the MNIST idx files (``t10k-images-idx3-ubyte.gz`` and its labels) with numpy only."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from tagloop.errors import InvalidInput, NotFound

_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049


def read_idx_images(path: Path) -> np.ndarray:
    """uint8 ``(N, rows, cols)`` from an idx3 file, gzipped or not."""
    raw = _read_bytes(path)
    magic, n, rows, cols = np.frombuffer(raw[:16], dtype=">i4")
    if magic != _IMAGES_MAGIC or len(raw) != 16 + n * rows * cols:
        raise InvalidInput(f"{path} is not an idx3 image file", code="invalid_idx")
    return np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, rows, cols).copy()


def read_idx_labels(path: Path) -> np.ndarray:
    """int64 ``(N,)`` from an idx1 label file, gzipped or not."""
    raw = _read_bytes(path)
    magic, n = np.frombuffer(raw[:8], dtype=">i4")
    if magic != _LABELS_MAGIC or len(raw) != 8 + n:
        raise InvalidInput(f"{path} is not an idx1 label file", code="invalid_idx")
    return np.frombuffer(raw[8:], dtype=np.uint8).astype(np.int64)


def read_mnist_test(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test images uint8 ``(N, 28, 28)`` and labels int64 ``(N,)``."""
    images = read_idx_images(mnist_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx_labels(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    if len(images) != len(labels):
        raise InvalidInput(
            f"{len(images)} MNIST images but {len(labels)} labels in {mnist_dir}",
            code="invalid_idx",
        )
    return images, labels


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise NotFound(f"MNIST file {path} does not exist", code="dataset_missing")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return handle.read()
