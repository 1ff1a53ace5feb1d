"""The long-tailed multi-label AV set (``tagloop.datasets.long_tail_*``) as model input, cached.

Specs (seeded; pool then test, the test split on the held-out speaker and MNIST images) ->
``render_clip_tensors`` per clip (the service's log-mel and frame sizes, no mp4: see
``long_tail_render``) -> one ``torch.save`` file under ``benchmarks/work`` (gitignored):
frames ``(N, 8, 3, 32, 32)`` uint8, logmel ``(N, 64, 151)`` float16 (1.5 s clips; the speech ends
by 1.2 s, inside the default 128-column training window), targets ``(N, 38)`` bool.

``python -m tests.benchmarks.lt_tensors [seed [n_pool n_test]]`` builds it and prints the tag
frequency table.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tests.benchmarks.av_digits_tensors import SHARED_DATA
from tests.benchmarks.common import WORK

if TYPE_CHECKING:
    from tagloop.simulation_data import SimulationSet
    from tagloop.training.dataset import LabeledClip

N_POOL = 20_000
N_TEST = 2_000
FRAMES_PER_CLIP = 8
FRAME_SIZE = 32
N_MELS = 64


@dataclass(frozen=True)
class LongTailTensors:
    """Every clip, stacked; rows ``0 .. n_pool-1`` are the pool, the rest the test split.

    frames ``(N, T, 3, 32, 32)`` uint8; logmel ``(N, 64, S)`` float16; audio_mask ``(N,)`` bool;
    targets ``(N, K)`` bool over ``vocab``; is_test ``(N,)`` bool; speaker: N names.
    """

    frames: torch.Tensor
    logmel: torch.Tensor
    audio_mask: torch.Tensor
    targets: torch.Tensor
    is_test: torch.Tensor
    speaker: list[str]
    vocab: list[dict[str, str | None]]


def cache_path(*, seed: int, n_pool: int = N_POOL, n_test: int = N_TEST) -> Path:
    return WORK / f"lt_s{seed}_p{n_pool}_t{n_test}.pt"


def _specs(seed: int, n_pool: int, n_test: int) -> list[Any]:
    from tagloop.datasets.long_tail_spec import generate_long_tail_specs, read_fsdd_table
    from tagloop.datasets.mnist import read_idx_labels

    fsdd = read_fsdd_table(SHARED_DATA / "fsdd")
    labels = read_idx_labels(SHARED_DATA / "mnist" / "t10k-labels-idx1-ubyte.gz")
    return generate_long_tail_specs(fsdd, labels, seed=seed, n_pool=n_pool, n_test=n_test)


def render_rows(seed: int, n_pool: int, n_test: int, start: int, stop: int) -> dict[str, Any]:
    """Clip tensors of specs ``start .. stop-1``, stacked (one worker's share)."""
    torch.set_num_threads(1)
    from tagloop.datasets.long_tail_render import load_long_tail_sources, render_clip_tensors
    from tagloop.datasets.long_tail_spec import CLIP_SECONDS
    from tagloop.features.clip_tensor import logmel_frames_for

    specs = _specs(seed, n_pool, n_test)[start:stop]
    sources = load_long_tail_sources(SHARED_DATA, rows={r for s in specs for r in s.recordings})
    n_columns = logmel_frames_for(CLIP_SECONDS, sample_rate=sources.sample_rate)
    # Filled in place: a list of clips and then a stack would hold every clip twice.
    frames = torch.empty(
        (len(specs), FRAMES_PER_CLIP, 3, FRAME_SIZE, FRAME_SIZE), dtype=torch.uint8
    )
    logmel = torch.empty((len(specs), N_MELS, n_columns), dtype=torch.float16)
    for row, spec in enumerate(specs):
        clip = render_clip_tensors(
            spec, sources, frames_per_clip=FRAMES_PER_CLIP, frame_size=FRAME_SIZE, n_mels=N_MELS
        )
        frames[row], logmel[row] = clip.frames, clip.logmel
    return {"frames": frames, "logmel": logmel}


def _join(parts: list[dict[str, Any]], key: str) -> torch.Tensor:
    """The parts' ``key`` tensors in order; one part as it is (a cat would copy ~1 GB)."""
    if len(parts) == 1:
        return parts[0].pop(key)
    return torch.cat([part.pop(key) for part in parts])


def build_lt_tensors(
    *, seed: int = 0, n_pool: int = N_POOL, n_test: int = N_TEST, workers: int = 1
) -> Path:
    """Render every clip and write the cache; returns its path."""
    from tagloop.datasets.long_tail_spec import long_tail_vocab, spec_targets

    specs = _specs(seed, n_pool, n_test)
    n = len(specs)
    size = -(-n // max(1, workers))
    bounds = [(first, min(n, first + size)) for first in range(0, n, size)]
    if workers <= 1:
        parts = [render_rows(seed, n_pool, n_test, a, b) for a, b in bounds]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(render_rows, seed, n_pool, n_test, a, b) for a, b in bounds]
            parts = [f.result() for f in futures]
    payload: dict[str, Any] = {
        "frames": _join(parts, "frames"),
        "logmel": _join(parts, "logmel"),
        "audio_mask": torch.ones(n, dtype=torch.bool),
        "targets": torch.from_numpy(spec_targets(specs)),
        "is_test": torch.tensor([s.split == "test" for s in specs], dtype=torch.bool),
        "speaker": [s.speaker for s in specs],
        "vocab": long_tail_vocab().to_json(),
    }
    path = cache_path(seed=seed, n_pool=n_pool, n_test=n_test)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # a killed build leaves no half-written cache behind
    return path


def load_lt_tensors(
    seed: int = 0, *, n_pool: int = N_POOL, n_test: int = N_TEST, workers: int = 1
) -> LongTailTensors:
    """The cached set, built first if missing; memory-mapped, so rows load when touched."""
    path = cache_path(seed=seed, n_pool=n_pool, n_test=n_test)
    if not path.exists():
        build_lt_tensors(seed=seed, n_pool=n_pool, n_test=n_test, workers=workers)
    payload = torch.load(path, weights_only=True, mmap=True)
    return LongTailTensors(
        frames=payload["frames"],
        logmel=payload["logmel"],
        audio_mask=payload["audio_mask"],
        targets=payload["targets"],
        is_test=payload["is_test"],
        speaker=list(payload["speaker"]),
        vocab=list(payload["vocab"]),
    )


def labeled_clips(data: LongTailTensors, rows: np.ndarray) -> list[LabeledClip]:
    """The rows as training clips (clip id = row); every tag is decided (``known`` all True:
    each clip names one tag of each group, and ungrouped tags are complete yes/no answers)."""
    from tagloop.features.clip_tensor import ClipTensors
    from tagloop.training.dataset import LabeledClip

    targets = data.targets.numpy()
    return [
        LabeledClip(
            clip_id=int(row),
            tensors=ClipTensors(frames=data.frames[row], logmel=data.logmel[row], audio_mask=True),
            targets=targets[row].astype(np.float32),
            known=np.ones(targets.shape[1], dtype=bool),
        )
        for row in rows
    ]


def load_lt_simulation_set(seed: int = 0, **kwargs: Any) -> SimulationSet:
    """The set as the active-learning simulation takes it (pool = not test, one video each)."""
    from tagloop.fusion import FusionConfig
    from tagloop.simulation_data import SimulationSet
    from tagloop.vocabulary import TagVocabulary

    data = load_lt_tensors(seed, **kwargs)
    is_test = data.is_test.numpy()
    pool_rows, test_rows = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    return SimulationSet(
        name="long-tail",
        pool=labeled_clips(data, pool_rows),
        test=labeled_clips(data, test_rows),
        pool_videos=pool_rows.astype(np.int64),
        vocab=TagVocabulary.from_json(data.vocab),
        config=FusionConfig(
            frames_per_clip=data.frames.shape[1],
            frame_size=data.frames.shape[-1],
            n_mels=data.logmel.shape[1],
        ),
    )


def describe(data: LongTailTensors) -> dict[str, Any]:
    """Shapes, split sizes and the per-tag pool/test counts (most frequent first)."""
    names = [item["name"] for item in data.vocab]
    pool = data.targets[~data.is_test].sum(0).tolist()
    test = data.targets[data.is_test].sum(0).tolist()
    table = sorted(zip(names, pool, test, strict=True), key=lambda r: -r[1])
    return {
        "clips": len(data.speaker),
        "pool": int((~data.is_test).sum()),
        "test": int(data.is_test.sum()),
        "frames": list(data.frames.shape),
        "logmel": list(data.logmel.shape),
        "tags": len(names),
        "max_over_min_pool": max(pool) / max(1, min(pool)),
        "mean_tags_per_clip": float(data.targets.sum(1).float().mean()),
        "table": table,
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    seed = args[0] if args else 0
    sizes = {"n_pool": args[1], "n_test": args[2]} if len(args) > 2 else {}
    start = time.perf_counter()
    data = load_lt_tensors(seed, **sizes)
    seconds = time.perf_counter() - start
    stats = describe(data)
    print("| tag | pool | test |\n|---|---:|---:|")
    for name, n_pool, n_test in stats.pop("table"):
        print(f"| `{name}` | {n_pool} | {n_test} |")
    path = cache_path(seed=seed, **sizes)
    stats |= {"seconds": round(seconds, 1), "cache_mb": round(path.stat().st_size / 2**20, 1)}
    print(json.dumps(stats))
