"""The suite's made-differently sets (AV-CIFAR, AV-digits-alt) as model input, cached.

Specs (seeded) -> rendered clips -> real mp4 files (``write_av_clip``, H.264 + AAC) ->
``probe_media`` + ``iter_clip_media`` + ``build_clip_tensors``, the calls a media worker makes
on ingestion (``pipeline.ingest.process_video``), with the service's frame and log-mel sizes
and ``clip_seconds=1.5`` (a deployment of short clips: each 1-1.2 s file is one clip, padded with
the log floor as the service pads a short video). The mp4 files stay under
``benchmarks/work/suite/<set>`` and the stacked tensors in one ``.pt`` per set and seed:
frames ``(N, 8, 3, 32, 32)`` uint8, logmel ``(N, 64, 151)`` float16, audio_mask, targets and
known ``(N, K)`` as ``build_targets`` gives them from each clip's tags, is_test, speaker, speech.

``python -m tests.benchmarks.suite_tensors [av_cifar|av_digits_alt ...]`` builds the caches.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tests.benchmarks.av_digits_tensors import SHARED_DATA
from tests.benchmarks.common import WORK

CLIP_SECONDS = 1.5
FRAMES_PER_CLIP = 8
FRAME_SIZE = 32
N_MELS = 64
SAMPLE_RATE = 16_000
PREVIEW_HEIGHT = 32  # previews are not used here; keep their encoding cheap
AV_CIFAR_POOL = 2400
AV_CIFAR_TEST = 600
SETS = ("av_cifar", "av_digits_alt")


def cache_path(name: str, *, seed: int) -> Path:
    return WORK / f"suite_{name}_s{seed}.pt"


def extract_file(path: Path) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The one clip of ``path`` as the ingestion worker extracts it: (frames, logmel, mask)."""
    from tagloop.features.clip_tensor import build_clip_tensors
    from tagloop.media.extract import iter_clip_media
    from tagloop.media.probe import probe_media

    info = probe_media(str(path))
    clips = list(
        iter_clip_media(
            str(path),
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
    return tensors.frames, tensors.logmel, tensors.audio_mask


def _plan(name: str, seed: int) -> tuple[list[Any], Any]:
    if name == "av_cifar":
        from tagloop.datasets.av_cifar import load_av_cifar_sources, plan_av_cifar

        cifar = load_av_cifar_sources(SHARED_DATA)
        specs = plan_av_cifar(
            labels=cifar.labels,
            fsdd=cifar.fsdd,
            n_pool=AV_CIFAR_POOL,
            n_test=AV_CIFAR_TEST,
            seed=seed,
        )
        return specs, cifar
    if name == "av_digits_alt":
        from tagloop.datasets.av_digits_alt import load_alt_digit_sources, plan_av_digits_alt

        alt = load_alt_digit_sources(SHARED_DATA)
        return plan_av_digits_alt(labels=alt.labels, fsdd=alt.fsdd, seed=seed), alt
    raise ValueError(f"unknown suite set {name!r}; one of {SETS}")


def write_and_extract(name: str, seed: int, start: int, stop: int) -> dict[str, torch.Tensor]:
    """Render specs ``start .. stop-1``, write each as mp4 (kept if already there), extract."""
    torch.set_num_threads(1)
    from tagloop.datasets.av_clip import CodecSettings, write_av_clip

    specs, sources = _plan(name, seed)
    if name == "av_cifar":
        from tagloop.datasets.av_cifar import FPS, render_av_cifar

        codec = CodecSettings(fps=FPS)
        render = render_av_cifar
    else:
        from tagloop.datasets.av_digits_alt import CODEC, render_av_digit_alt

        codec = CODEC
        render = render_av_digit_alt
    folder = WORK / "suite" / f"{name}_s{seed}" / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    frames = torch.empty(
        (stop - start, FRAMES_PER_CLIP, 3, FRAME_SIZE, FRAME_SIZE), dtype=torch.uint8
    )
    logmels, masks = [], []
    for row, index in enumerate(range(start, stop)):
        path = folder / f"{index:05d}.mp4"
        if not path.exists():
            tmp = path.with_suffix(".tmp.mp4")
            write_av_clip(render(specs[index], sources), tmp, codec=codec)
            tmp.replace(path)
        clip_frames, logmel, mask = extract_file(path)
        frames[row] = clip_frames
        logmels.append(logmel)
        masks.append(mask)
    return {
        "frames": frames,
        "logmel": torch.stack(logmels),
        "audio_mask": torch.tensor(masks, dtype=torch.bool),
    }


def vocab_of(name: str) -> Any:
    if name == "av_cifar":
        from tagloop.datasets.av_cifar import av_cifar_vocab

        return av_cifar_vocab()
    from tagloop.simulation_data import digit_vocab

    return digit_vocab()


def build_suite_tensors(name: str, *, seed: int = 0, workers: int = 2) -> Path:
    """Write the mp4 files and the tensor cache of set ``name``; returns the cache path."""
    from tagloop.training.targets import build_targets

    specs, _ = _plan(name, seed)
    n = len(specs)
    size = -(-n // max(1, workers))
    bounds = [(a, min(n, a + size)) for a in range(0, n, size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(write_and_extract, name, seed, a, b) for a, b in bounds]
        parts = [f.result() for f in futures]
    vocab = vocab_of(name)
    pairs = [build_targets(spec.tags, vocab=vocab) for spec in specs]
    payload: dict[str, Any] = {
        key: torch.cat([part[key] for part in parts]) for key in ("frames", "logmel", "audio_mask")
    }
    payload |= {
        "targets": torch.from_numpy(np.stack([t for t, _ in pairs])),
        "known": torch.from_numpy(np.stack([k for _, k in pairs])),
        "is_test": torch.tensor([s.split == "test" for s in specs], dtype=torch.bool),
        "speaker": [s.speaker or "" for s in specs],
        "speech": torch.tensor([s.speaker is not None for s in specs], dtype=torch.bool),
        "vocab": vocab.to_json(),
    }
    path = cache_path(name, seed=seed)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_suite_tensors(name: str, *, seed: int = 0, workers: int = 2) -> dict[str, Any]:
    """The cached set ``name`` (built first if missing), as saved, but with targets and known
    derived again from each clip's tags by the current ``build_targets``: a cache built under
    an older label rule (a group with no chosen tag left unknown, before "none of these") must
    not train under it."""
    from tagloop.training.targets import build_targets
    from tagloop.vocabulary import TagVocabulary

    path = cache_path(name, seed=seed)
    if not path.exists():
        build_suite_tensors(name, seed=seed, workers=workers)
    payload = dict(torch.load(path, weights_only=True))
    vocab = TagVocabulary.from_json(payload["vocab"])
    chosen = payload["targets"].numpy() > 0.5
    pairs = [
        build_targets([vocab.tags[j] for j in np.flatnonzero(row)], vocab=vocab) for row in chosen
    ]
    payload["targets"] = torch.from_numpy(np.stack([t for t, _ in pairs]))
    payload["known"] = torch.from_numpy(np.stack([k for _, k in pairs]))
    return payload


if __name__ == "__main__":
    for set_name in sys.argv[1:] or SETS:
        began = time.perf_counter()
        data = load_suite_tensors(set_name)
        print(
            f"{set_name}: {len(data['speaker'])} clips, frames {tuple(data['frames'].shape)}, "
            f"logmel {tuple(data['logmel'].shape)}, {int(data['is_test'].sum())} test, "
            f"speech {float(data['speech'].float().mean()):.2f}, "
            f"{time.perf_counter() - began:.0f} s",
            flush=True,
        )
