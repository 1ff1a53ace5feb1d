"""``bench_fusion_folds`` again, with both branches started from a pretraining run (issue 11:
CentralNet - concat with and without pretraining).

For each training speaker in turn, one pretraining run (the service job's options,
``bench_cold_start.pretrain_options``: seed 0, the step floor) on the clips of the four
others, the clips that fold trains and validates on; the fold's test speaker and theo are never
seen. Then CentralNet and concat start from those weights (``Backbone``, fine-tuned, as a
service round after a pretraining job) with the same options, seeds and validation rule as the
runs without. The encoders are kept in ``benchmarks/work/fusion_folds/without_<speaker>`` and
each finished run's record next to ``bench_fusion``'s, so an interrupted run resumes.

``python -m tests.benchmarks.bench_fusion_folds_pretrained`` runs it without the results file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from tests.benchmarks.av_digits_tensors import TEST_SPEAKER, load_av_digits_tensors
from tests.benchmarks.bench_fusion import IMAGE_ENERGY, SNR_DB, cached_run, split_rows
from tests.benchmarks.bench_fusion_folds import KINDS, SEEDS, fold_table
from tests.benchmarks.common import REPO, WORK

FOLDER = WORK / "fusion_folds"


def fold_encoders(speaker: str) -> tuple[Path, dict[str, Any]]:
    """The pretraining run for the fold that tests on ``speaker``: its weights file (reused
    when it exists) and what it took."""
    from tagloop.config import Settings
    from tagloop.training.pretrain import load_encoder_state
    from tests.benchmarks.bench_cold_start import cached_encoders, pretrain_options

    data = load_av_digits_tensors(image_energy=IMAGE_ENERGY, snr_db=SNR_DB)
    train, val, _ = split_rows(data, test_speaker=speaker)
    pool = np.sort(np.concatenate([train, val]))
    path, _ = cached_encoders(
        data,
        pool,
        options=pretrain_options(),
        settings=Settings(),
        folder=FOLDER / f"without_{speaker}",
    )
    saved = load_encoder_state(path.read_bytes())
    return path, {
        "path": str(path.relative_to(REPO)),
        "n_clips": saved.n_clips,
        "epochs": len(saved.history),
        "seconds": round(saved.seconds, 1),
    }


def run(*, out: dict[str, Any]) -> None:
    start = time.perf_counter()
    data = load_av_digits_tensors(image_energy=IMAGE_ENERGY, snr_db=SNR_DB)
    speakers = sorted(set(data.speaker) - {TEST_SPEAKER})
    records: dict[tuple[str, str, int], dict[str, Any]] = {}
    pretraining: dict[str, Any] = {}
    for speaker in speakers:
        encoders, pretraining[speaker] = fold_encoders(speaker)
        print(f"[folds+pretrain] {speaker}: {json.dumps(pretraining[speaker])}", flush=True)
        for seed in SEEDS:
            for kind in KINDS:
                records[kind, speaker, seed] = cached_run(kind, seed, speaker, encoders=encoders)
    out["fusion_speaker_folds_pretrained"] = {
        **fold_table(records, speakers),
        "pretraining": pretraining,
        "setting": {"image_energy": IMAGE_ENERGY, "snr_db": SNR_DB, "seeds": list(SEEDS)},
        "seconds": round(time.perf_counter() - start, 1),
    }


if __name__ == "__main__":
    result: dict[str, Any] = {}
    run(out=result)
    print(json.dumps(result, indent=1))
