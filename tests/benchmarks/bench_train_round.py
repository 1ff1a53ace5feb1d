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
MODULE = "tests.benchmarks.bench_train_round"


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


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child_main()
    else:
        result: dict[str, Any] = {}
        run(out=result)
        print(json.dumps(result, indent=1))
