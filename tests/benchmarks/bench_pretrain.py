"""Self-supervised audio-visual pretraining at pool scale (``tagloop.training.pretrain``):
20,000 clips, the default ``PretrainOptions`` and ``FusionConfig``, 2 CPU threads (targets:
under 15 minutes, peak RSS under 3 GB), and whether it learned anything.

Data: the FSDD+MNIST AV-digits cache at bench_fusion's degradation, the training speakers'
clips only (the held-out speaker stays unseen until the probe tests on it), TILED to 20,000
clips: the 2,500 distinct clips repeat 8 times, in order, so the pool is the size of a real
one but not as varied (an epoch is 8 passes over the distinct clips). The clips stream through
``pack_pool`` one ``ClipTensors`` at a time, as they would from the blob store. Tiling also
puts copies of the held-back clips in training, so the reported retrieval top-1 can pass the
class-level bound (10 digits: about ``10 / batch_size``); the probe is the clean measure.

Usefulness: linear probes (standardised features + sklearn LogisticRegression) on the frozen
branches' last-block features (visual ``(256,)`` over the 8 frames, audio ``(512,)`` over 128
log-mel columns, concatenated), fit on 100 random clips of the training speakers and tested on
the held-out speaker, mean over 5 label draws; once for the pretrained branches and once for
the same branches at their random init (the weights pretraining started from).

A fresh child process does the work, so the time and the peak RSS (VmHWM, its own address
space; see ``bench_refill.own_peak_rss_gb``) are the pretraining's own.

    python -m tests.benchmarks.bench_pretrain                        (the benchmark's figures)
    python -m tests.benchmarks.bench_pretrain '{"epochs": 4}' [n_clips]  (a trial of options)

Neither writes the results file; ``tests.benchmarks.run`` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tests.benchmarks.av_digits_tensors import AVDigitsTensors, load_av_digits_tensors
from tests.benchmarks.bench_fusion import IMAGE_ENERGY, SNR_DB
from tests.benchmarks.bench_refill import own_peak_rss_gb

MODULE = "tests.benchmarks.bench_pretrain"
N_CLIPS = 20_000
N_LABELS = 100
LABEL_DRAWS = 5


def tiled_clips(data: AVDigitsTensors, rows: np.ndarray, *, n: int) -> Iterator[Any]:
    """``n`` ClipTensors cycling over ``rows`` (views into the stacked cache, no copies)."""
    from tagloop.features.clip_tensor import ClipTensors

    for i in range(n):
        row = int(rows[i % len(rows)])
        yield ClipTensors(
            frames=data.frames[row], logmel=data.logmel[row], audio_mask=bool(data.audio_mask[row])
        )


def branch_features(visual: Any, audio: Any, data: AVDigitsTensors, *, audio_frames: int) -> Any:
    """Last-block features of every clip: ``(N, 256)`` visual and ``(N, 512)`` audio."""
    import torch

    from tagloop.training.dataset import crop_logmel

    out_v, out_a = [], []
    with torch.no_grad():
        for first in range(0, len(data.digit), 256):
            part = slice(first, first + 256)
            logmel = crop_logmel(data.logmel[part].float(), audio_frames=audio_frames)
            out_v.append(visual(data.frames[part])[-1])
            out_a.append(audio(logmel, data.audio_mask[part])[-1])
    return torch.cat(out_v).numpy(), torch.cat(out_a).numpy()


def probe_accuracy(features: np.ndarray, data: AVDigitsTensors) -> dict[str, float]:
    """Held-out-speaker accuracy of a linear probe fit on N_LABELS random training clips."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    digits = data.digit.numpy()
    is_test = data.is_test.numpy()
    pool = np.flatnonzero(~is_test)
    accuracies = []
    for draw in range(LABEL_DRAWS):
        rows = np.random.default_rng(draw).choice(pool, N_LABELS, replace=False)
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        probe.fit(features[rows], digits[rows])
        accuracies.append(float(probe.score(features[is_test], digits[is_test])))
    return {"mean": float(np.mean(accuracies)), "std": float(np.std(accuracies))}


def probe_all(visual: Any, audio: Any, data: AVDigitsTensors, *, audio_frames: int) -> Any:
    vis, aud = branch_features(visual, audio, data, audio_frames=audio_frames)
    return {
        "av": probe_accuracy(np.concatenate([vis, aud], axis=1), data),
        "visual": probe_accuracy(vis, data),
        "audio": probe_accuracy(aud, data),
    }


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_main(overrides: dict[str, Any], n_clips: int) -> None:
    import torch

    from tagloop.fusion import FusionConfig
    from tagloop.fusion.branch import AudioBranch, VisualBranch
    from tagloop.training.backbone import load_branch
    from tagloop.training.pretrain import (
        PretrainOptions,
        init_branches,
        pack_pool,
        pretrain_encoders,
    )

    config = FusionConfig()
    options = PretrainOptions.from_dict(overrides)
    data = load_av_digits_tensors(image_energy=IMAGE_ENERGY, snr_db=SNR_DB)
    rows = np.flatnonzero((~data.is_test & data.audio_mask).numpy())
    baseline_rss = own_peak_rss_gb()
    start = time.perf_counter()
    pool = pack_pool(
        tiled_clips(data, rows, n=n_clips), config=config, options=options, total=n_clips
    )
    pack_seconds = time.perf_counter() - start

    def report(epoch: int, epochs: int, record: dict[str, Any]) -> None:
        print(f"epoch {epoch}/{epochs} {json.dumps(record)}", file=sys.stderr, flush=True)

    cpu_start = cpu_seconds()
    result = pretrain_encoders(pool, config=config, options=options, progress=report)
    pretrain_cpu = cpu_seconds() - cpu_start
    peak_rss = own_peak_rss_gb()
    pool_gb = pool.nbytes / 1024**3
    del pool
    visual, audio = VisualBranch(config), AudioBranch(config)
    for name, branch in (("visual", visual), ("audio", audio)):
        own = {k[len(name) + 1 :]: v for k, v in result.state.items() if k.startswith(f"{name}.")}
        load_branch(branch, own, path=Path("<pretrained>"))
    torch.set_num_threads(options.num_threads)
    probe_start = time.perf_counter()
    pretrained = probe_all(visual, audio, data, audio_frames=options.audio_frames)
    random_init = probe_all(
        *init_branches(config, seed=options.seed), data, audio_frames=options.audio_frames
    )
    record = {
        "options": options.to_dict(),
        "n_pool": n_clips,
        "n_distinct": len(rows),
        "pack_seconds": pack_seconds,
        "pretrain_seconds": result.seconds,
        # CPU time over wall time: about 2 when it had both cores, less when it shared them.
        "pretrain_cpu_seconds": pretrain_cpu,
        "cores_used": pretrain_cpu / result.seconds,
        "pool_gb": pool_gb,
        "baseline_rss_gb": baseline_rss,
        "peak_rss_gb": peak_rss,
        "history": result.history,
        "probe_pretrained": pretrained,
        "probe_random_init": random_init,
        "probe_seconds": time.perf_counter() - probe_start,
    }
    print(json.dumps(record), flush=True)


def run_pretrain(overrides: dict[str, Any] | None = None, *, n_clips: int = N_CLIPS) -> Any:
    from tests.benchmarks.common import run_child

    return run_child(MODULE, "--child", json.dumps(overrides or {}), str(n_clips))


def run(*, out: dict[str, Any]) -> None:
    load_av_digits_tensors(image_energy=IMAGE_ENERGY, snr_db=SNR_DB)  # the cache, not timed
    before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    record = run_pretrain()
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    last = record["history"][-1]
    out["pretrain_seconds_20k"] = record["pack_seconds"] + record["pretrain_seconds"]
    out["pretrain_peak_rss_gb"] = record["peak_rss_gb"]
    out["pretrain_probe_av_accuracy"] = record["probe_pretrained"]["av"]["mean"]
    out["pretrain_probe_av_accuracy_random_init"] = record["probe_random_init"]["av"]["mean"]
    out["pretrain_detail"] = {
        **record,
        "final_retrieval_top1": last["retrieval_top1"],
        "retrieval_chance": last["retrieval_chance"],
        "data": (
            f"FSDD+MNIST AV digits (image_energy={IMAGE_ENERGY}, snr_db={SNR_DB}), "
            f"{record['n_distinct']} distinct training-speaker clips tiled to "
            f"{record['n_pool']}; probe: {N_LABELS} random training-speaker labels, "
            f"tested on the held-out speaker, mean of {LABEL_DRAWS} draws"
        ),
        "load_before": before,
        "load_after": after,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child_main(json.loads(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1:]:  # a trial: option overrides as JSON, optionally a pool size
        args = sys.argv[1:]
        n = int(args[1]) if len(args) > 1 else N_CLIPS
        print(json.dumps(run_pretrain(json.loads(args[0]), n_clips=n), indent=1))
    else:
        figures: dict[str, Any] = {}
        run(out=figures)
        print(json.dumps(figures, indent=1))
