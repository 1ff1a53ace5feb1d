"""End to end on AV-CIFAR (issue 19 item 3): with labels complete, a clip nobody speaks in is a
"none" label for the ``number`` group, and the service's probe learns it.

The clips are the suite's AV-CIFAR tensors (``tests/benchmarks/suite_tensors.py``: real mp4
files through the ingestion calls; the number is spoken in 70% of clips). Building that cache
takes many minutes, so the test runs where it exists (``benchmarks/work``; build it with
``python -m tests.benchmarks.suite_tensors av_cifar``). Under the old rule the served probe's
top ``number`` probability was higher on speech-free clips (AUC 0.05-0.2); the speech score
here is ``1 - P(none)``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.benchmarks.suite_tensors import cache_path

pytestmark = pytest.mark.skipif(
    not cache_path("av_cifar", seed=0).exists(),
    reason="no AV-CIFAR tensor cache (python -m tests.benchmarks.suite_tensors av_cifar)",
)


def test_probe_on_200_labels_tells_speech_from_none() -> None:
    from sklearn.metrics import roc_auc_score

    from tagloop.config import Settings
    from tagloop.none_outcome import likeliest_outcome, none_probability
    from tagloop.pipeline.training import round_config, round_options, split_labeled
    from tagloop.training.loop import train_model
    from tagloop.training.predict import predict_clips
    from tests.benchmarks.bench_suite import label_rows, load_suite_set
    from tests.benchmarks.suite_models import labeled_clips

    data = load_suite_set("av_cifar")
    assert data.speech is not None
    rows = label_rows(data, budget=200, seed=0)
    samples = labeled_clips(data, rows)
    number = data.vocab.group_indices["number"]
    # The labels say "none" where nobody speaks: every group is known on every clip.
    assert data.known[rows].all() and not data.targets[rows][~data.speech[rows]][:, number].any()
    settings = Settings()
    train, val = split_labeled(samples, val_fraction=settings.val_fraction)
    # The service's probe, its C chosen on the validation clips (folds cost minutes here).
    options = replace(round_options(settings), cv_folds=0, num_threads=1)
    result = train_model(
        kind="probe",
        vocab=data.vocab,
        config=round_config(settings),
        train=train,
        val=val,
        options=options,
        init_state=None,
        init_vocab=None,
        backbone=None,
    )
    test = labeled_clips(data, data.test)
    probs = predict_clips(
        result.model, [c.tensors for c in test], vocab=data.vocab, audio_frames=options.audio_frames
    ).probs
    speech = 1.0 - none_probability(probs[:, number])
    truth = data.speech[data.test]
    auc = float(roc_auc_score(truth, speech))
    accuracy = float(np.mean((speech >= 0.5) == truth))
    print(f"speech-present AUC {auc:.3f}, accuracy at 0.5 {accuracy:.3f}")
    assert auc > 0.9
    assert accuracy > 0.85
    # Group accuracy counts "none" as an outcome: on silent clips the likeliest is none.
    silent = likeliest_outcome(probs[~truth][:, number]) == number.size
    assert float(silent.mean()) > 0.85
