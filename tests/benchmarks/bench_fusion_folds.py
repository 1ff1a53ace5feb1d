"""CentralNet against concat on every training speaker in turn (leave one speaker out).

``bench_fusion`` tests on one unseen speaker, theo, and the gap between CentralNet and concat
there is within the spread between seeds. This benchmark asks the same question on the five
other speakers: for each, train on the remaining four (same options, same validation rule as
``bench_fusion``), test on that speaker; theo is not used at all. Two seeds per fold.

``python -m tests.benchmarks.bench_fusion_folds`` runs it without the results file.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from tests.benchmarks.av_digits_tensors import TEST_SPEAKER, load_av_digits_tensors
from tests.benchmarks.bench_fusion import IMAGE_ENERGY, SNR_DB, cached_run

KINDS = ("centralnet", "concat")
SEEDS = (0, 1)


def run(*, out: dict[str, Any]) -> None:
    data = load_av_digits_tensors(image_energy=IMAGE_ENERGY, snr_db=SNR_DB)
    speakers = sorted(set(data.speaker) - {TEST_SPEAKER})
    records = {
        (kind, speaker, seed): cached_run(kind, seed, speaker)
        for speaker in speakers
        for seed in SEEDS
        for kind in KINDS
    }
    out["fusion_speaker_folds"] = {
        **fold_table(records, speakers),
        "setting": {"image_energy": IMAGE_ENERGY, "snr_db": SNR_DB, "seeds": list(SEEDS)},
    }


def fold_table(
    records: dict[tuple[str, str, int], dict[str, Any]], speakers: list[str]
) -> dict[str, Any]:
    """Each kind's mean and std over folds and seeds, CentralNet - concat paired per run, and
    every run's accuracy per speaker."""
    table: dict[str, Any] = {}
    for kind in KINDS:
        accs = [records[kind, sp, seed]["test_accuracy"] for sp in speakers for seed in SEEDS]
        table[kind] = {"mean": statistics.mean(accs), "std": statistics.stdev(accs)}
    gaps = [
        records["centralnet", sp, seed]["test_accuracy"]
        - records["concat", sp, seed]["test_accuracy"]
        for sp in speakers
        for seed in SEEDS
    ]
    return {
        **table,
        "centralnet_minus_concat": {
            "mean": statistics.mean(gaps),
            "std": statistics.stdev(gaps),
            "centralnet_ahead": sum(g > 0 for g in gaps),
            "concat_ahead": sum(g < 0 for g in gaps),
            "runs": len(gaps),
        },
        "per_speaker": {
            sp: {
                kind: [records[kind, sp, seed]["test_accuracy"] for seed in SEEDS] for kind in KINDS
            }
            for sp in speakers
        },
    }


if __name__ == "__main__":
    start = time.perf_counter()
    result: dict[str, Any] = {}
    run(out=result)
    print(json.dumps(result, indent=1))
    print(f"{time.perf_counter() - start:.0f} s")
