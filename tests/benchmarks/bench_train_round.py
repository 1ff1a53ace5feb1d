"""One training round on 2,000 labeled AV-digit clips, from scratch (DESIGN section 9: < 2 min
on 2 CPU cores).

The round is what a retraining task runs: the default ``TrainOptions`` and ``FusionConfig``,
CentralNet, the labeled clips split 80/20 into train/validation by clip id, early stopping.
It runs in a fresh child process so the time and the peak RSS are the round's own; the clip
tensors come from the FSDD+MNIST cache (``av_digits_tensors``), the feature store's stand-in.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import numpy as np

from tests.benchmarks.av_digits_tensors import load_av_digits_tensors
from tests.benchmarks.bench_fusion import IMAGE_ENERGY, SNR_DB, digit_vocab, labeled_clips

N_CLIPS = 2000
# The largest probe round (probe_below_labels is 500): every candidate, 5 folds, 6 Cs, 3 heads.
N_PROBE = 480
MODULE = "tests.benchmarks.bench_train_round"


def probe_child_main() -> None:
    """A probe round on N_PROBE labels with the defaults: the candidates (ImageNet embedding
    + log-mel bins, + statistics, the pixel floor), C by grouped folds, calibration. The
    embeddings are computed first, outside the timing: the media worker stores them at ingest."""
    from tagloop.features.visual_embedding import ensure_visual_embeddings
    from tagloop.fusion import FusionConfig
    from tagloop.training.loop import TrainOptions, train_model
    from tagloop.training.split import assign_splits
    from tests.benchmarks.common import peak_rss_gb

    data = load_av_digits_tensors(image_energy=IMAGE_ENERGY, snr_db=SNR_DB)
    rows = np.flatnonzero(~data.is_test.numpy())[:N_PROBE]
    is_val = assign_splits(rows, val_fraction=0.2)
    train = labeled_clips(data, rows[~is_val])
    val = labeled_clips(data, rows[is_val])
    ensure_visual_embeddings([c.tensors for c in train + val])
    start = time.perf_counter()
    result = train_model(
        kind="probe",
        vocab=digit_vocab(),
        config=FusionConfig(),
        train=train,
        val=val,
        options=TrainOptions(),
    )
    record = {
        "seconds": time.perf_counter() - start,
        "candidates": result.metrics.get("candidates"),
        "val_score": result.metrics["score"],
        "n_train": int((~is_val).sum()),
        "peak_rss_gb": peak_rss_gb(),
    }
    print(json.dumps(record), flush=True)


def child_main() -> None:
    from tagloop.fusion import FusionConfig
    from tagloop.training.loop import TrainOptions, train_model
    from tagloop.training.split import assign_splits
    from tests.benchmarks.common import peak_rss_gb

    data = load_av_digits_tensors(image_energy=IMAGE_ENERGY, snr_db=SNR_DB)
    rows = np.flatnonzero(~data.is_test.numpy())[:N_CLIPS]
    is_val = assign_splits(rows, val_fraction=0.2)
    start = time.perf_counter()
    result = train_model(
        kind="centralnet",
        vocab=digit_vocab(),
        config=FusionConfig(),
        train=labeled_clips(data, rows[~is_val]),
        val=labeled_clips(data, rows[is_val]),
        options=TrainOptions(),
    )
    seconds = time.perf_counter() - start
    record = {
        "seconds": seconds,
        "epochs_run": result.epochs_run,
        "val_score": result.metrics["score"],
        "n_train": int((~is_val).sum()),
        "n_val": int(is_val.sum()),
        "peak_rss_gb": peak_rss_gb(),
    }
    print(json.dumps(record), flush=True)


def run(*, out: dict[str, Any]) -> None:
    from tests.benchmarks.common import run_child

    load_av_digits_tensors(image_energy=IMAGE_ENERGY, snr_db=SNR_DB)  # the cache, not timed
    before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    record = run_child(MODULE, "--child")
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out["train_round_seconds_2000"] = record["seconds"]
    out["train_round_peak_rss_gb"] = record["peak_rss_gb"]
    out["train_round_detail"] = {**record, "load_before": before, "load_after": after}
    probe = run_child(MODULE, "--child-probe")
    out["train_round_seconds_probe_480"] = probe["seconds"]
    out["train_round_probe_detail"] = {
        **probe,
        "load_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child_main()
    elif sys.argv[1:] == ["--child-probe"]:
        probe_child_main()
    else:
        result: dict[str, Any] = {}
        run(out=result)
        print(json.dumps(result, indent=1))
