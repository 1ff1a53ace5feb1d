"""The FSDD+MNIST AV-digits set as model input, built through the ingestion media path, cached.

Samples (``build_fsdd_mnist_samples``, one FSDD speaker held out) -> real mp4 files
(``write_av_dataset``) -> ``probe_media`` + ``iter_clip_media`` + ``build_clip_tensors``, as a
worker does on ingestion, with ``clip_seconds=2.5`` so each recording (0.14-2.28 s) is one clip.
The stacked tensors are cached as one ``.pt`` file under ``benchmarks/work`` per degradation
setting; the mp4 files are cached too, so a rerun costs a ``torch.load``.

``python -m tests.benchmarks.av_digits_tensors [image_energy snr_db]`` builds the cache.
"""

from __future__ import annotations

import csv
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from tests.benchmarks.common import WORK

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TEST_SPEAKER = "theo"
CLIP_SECONDS = 2.5
FRAMES_PER_CLIP = 8
FRAME_SIZE = 32
N_MELS = 64
SAMPLE_RATE = 16000
PREVIEW_HEIGHT = 32  # the preview is not used here; keep its encoding cheap


@dataclass(frozen=True)
class AVDigitsTensors:
    """Every clip of the set, stacked.

    frames ``(N, T, 3, 32, 32)`` uint8; logmel ``(N, 64, S)`` float16; audio_mask ``(N,)`` bool;
    digit ``(N,)`` int64; speaker: N names; is_test ``(N,)`` bool (the held-out speaker).
    """

    frames: torch.Tensor
    logmel: torch.Tensor
    audio_mask: torch.Tensor
    digit: torch.Tensor
    speaker: list[str]
    is_test: torch.Tensor


def extract_files(paths: list[str]) -> dict[str, torch.Tensor]:
    """Run the ingestion media path on each file (one clip each); stacked tensors."""
    torch.set_num_threads(1)
    from tagloop.features.clip_tensor import build_clip_tensors
    from tagloop.media.extract import iter_clip_media
    from tagloop.media.probe import probe_media

    frames, logmels, masks = [], [], []
    for path in paths:
        info = probe_media(path)
        clips = list(
            iter_clip_media(
                path,
                info=info,
                clip_seconds=CLIP_SECONDS,
                frames_per_clip=FRAMES_PER_CLIP,
                frame_size=FRAME_SIZE,
                sample_rate=SAMPLE_RATE,
                preview_height=PREVIEW_HEIGHT,
            )
        )
        if len(clips) != 1:
            raise RuntimeError(f"{path}: expected one clip, got {len(clips)}")
        tensors = build_clip_tensors(
            clips[0], sample_rate=SAMPLE_RATE, n_mels=N_MELS, clip_seconds=CLIP_SECONDS
        )
        frames.append(tensors.frames)
        logmels.append(tensors.logmel)
        masks.append(tensors.audio_mask)
    return {
        "frames": torch.stack(frames),
        "logmel": torch.stack(logmels),
        "audio_mask": torch.tensor(masks, dtype=torch.bool),
    }


def cache_path(*, image_energy: float, snr_db: float, seed: int) -> Path:
    return WORK / f"fsdd_mnist_e{image_energy:g}_snr{snr_db:g}_s{seed}.pt"


def build_av_digits_tensors(
    *, image_energy: float, snr_db: float, seed: int = 0, workers: int = 2
) -> Path:
    """Write the mp4 files (if missing) and the tensor cache; returns the cache path."""
    from tagloop.datasets.av_digits import build_fsdd_mnist_samples, write_av_dataset

    out_dir = WORK / f"fsdd_mnist/e{image_energy:g}_snr{snr_db:g}_s{seed}"
    labels = out_dir / "labels.csv"
    if not labels.exists():
        samples = build_fsdd_mnist_samples(
            data_dir=SHARED_DATA,
            test_speaker=TEST_SPEAKER,
            image_energy=image_energy,
            snr_db=snr_db,
            seed=seed,
        )
        write_av_dataset(samples, out_dir, workers=workers)
    with labels.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    paths = [str(out_dir / row["file"]) for row in rows]
    # Contiguous chunks, one per worker: results come back in file order.
    size = -(-len(paths) // workers)
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(extract_files, chunks))
    payload: dict[str, object] = {
        key: torch.cat([part[key] for part in parts]) for key in ("frames", "logmel", "audio_mask")
    }
    payload["digit"] = torch.tensor([int(row["digit"]) for row in rows], dtype=torch.int64)
    payload["is_test"] = torch.tensor([row["split"] == "test" for row in rows], dtype=torch.bool)
    payload["speaker"] = [row["speaker"] for row in rows]
    path = cache_path(image_energy=image_energy, snr_db=snr_db, seed=seed)
    torch.save(payload, path)
    return path


def load_av_digits_tensors(
    *, image_energy: float, snr_db: float, seed: int = 0, workers: int = 2
) -> AVDigitsTensors:
    """The cached set, built first if missing."""
    path = cache_path(image_energy=image_energy, snr_db=snr_db, seed=seed)
    if not path.exists():
        build_av_digits_tensors(
            image_energy=image_energy, snr_db=snr_db, seed=seed, workers=workers
        )
    payload = torch.load(path, weights_only=True)
    return AVDigitsTensors(
        frames=payload["frames"],
        logmel=payload["logmel"],
        audio_mask=payload["audio_mask"],
        digit=payload["digit"],
        speaker=list(payload["speaker"]),
        is_test=payload["is_test"],
    )


if __name__ == "__main__":
    energy, snr = (float(sys.argv[1]), float(sys.argv[2])) if len(sys.argv) > 2 else (0.25, 20.0)
    start = time.perf_counter()
    data = load_av_digits_tensors(image_energy=energy, snr_db=snr)
    print(
        f"{len(data.digit)} clips, frames {tuple(data.frames.shape)}, logmel "
        f"{tuple(data.logmel.shape)}, {int(data.is_test.sum())} test, "
        f"{time.perf_counter() - start:.0f} s"
    )
