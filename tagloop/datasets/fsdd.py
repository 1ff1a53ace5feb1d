"""Read the Free Spoken Digit Dataset (FSDD): ``labels.csv`` and its 8 kHz PCM wavs.

Uses Python's ``wave`` module: torchaudio 2.9's ``load`` needs extra packages.
"""

from __future__ import annotations

import csv
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagloop.errors import InvalidInput, InvalidMedia, NotFound


@dataclass(frozen=True)
class FsddRecord:
    """One row of ``labels.csv``; ``file`` is relative to the fsdd folder."""

    file: str
    digit: int
    speaker: str
    index: int


def read_fsdd_labels(fsdd_dir: Path) -> list[FsddRecord]:
    """All rows of ``fsdd_dir/labels.csv`` in file order."""
    labels = fsdd_dir / "labels.csv"
    if not labels.is_file():
        raise NotFound(f"FSDD labels {labels} do not exist", code="dataset_missing")
    with labels.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    try:
        return [
            FsddRecord(
                file=row["file"],
                digit=int(row["digit"]),
                speaker=row["speaker"],
                index=int(row["index"]),
            )
            for row in rows
        ]
    except (KeyError, ValueError) as exc:
        raise InvalidInput(f"{labels} has a malformed row: {exc}", code="invalid_labels") from exc


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 ``(N,)`` in [-1, 1] and the sample rate, from a 16-bit PCM wav.

    Several channels are averaged.
    """
    if not path.is_file():
        raise NotFound(f"wav file {path} does not exist", code="dataset_missing")
    try:
        with wave.open(str(path), "rb") as handle:
            width = handle.getsampwidth()
            channels = handle.getnchannels()
            rate = handle.getframerate()
            frames = handle.readframes(handle.getnframes())
    except (wave.Error, EOFError) as exc:
        raise InvalidMedia(f"{path} is not a readable wav: {exc}", code="invalid_wav") from exc
    if width != 2:
        raise InvalidMedia(f"{path}: expected 16-bit PCM, got {8 * width}-bit", code="invalid_wav")
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, channels).mean(axis=1), rate
