"""Absence is learned from real speech, in every run of the suite (issue 19 item 3).

A small AV-CIFAR set (real CIFAR-10 photographs, real FSDD speech in 70 % of clips, a speaker
held out for test) is written as mp4 files and extracted by the media worker's own calls; the
labels are complete, so a clip nobody speaks in is a "none" label for the ``number`` group. The
service's probe, trained on the pool, must tell speech from silence on the held-out speaker by
``1 - P(none)``. Under the old rule (a group with no chosen tag left unknown) nothing taught the
model that silence exists, and its speech score ran backwards (AUC 0.05-0.3 on the suite).
``test_speech_none_avcifar.py`` asks the same of the full set where its cache exists.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

N_POOL, N_TEST = 120, 60


def test_the_probe_tells_speech_from_none_on_a_small_real_set(
    shared_data: Path, tmp_path: Path
) -> None:
    from sklearn.metrics import roc_auc_score

    from tagloop.datasets.av_cifar import (
        FPS,
        av_cifar_vocab,
        load_av_cifar_sources,
        plan_av_cifar,
        render_av_cifar,
    )
    from tagloop.datasets.av_clip import CodecSettings, write_av_clip
    from tagloop.none_outcome import none_probability
    from tagloop.pipeline.training import round_config, round_options
    from tagloop.training.dataset import LabeledClip
    from tagloop.training.loop import train_model
    from tagloop.training.predict import predict_clips
    from tagloop.training.targets import build_targets
    from tests.benchmarks.suite_tensors import extract_file, suite_settings

    sources = load_av_cifar_sources(shared_data)
    specs = plan_av_cifar(
        labels=sources.labels, fsdd=sources.fsdd, n_pool=N_POOL, n_test=N_TEST, seed=3
    )
    vocab = av_cifar_vocab()
    settings = suite_settings()
    clips, speech, is_test = [], [], []
    for i, spec in enumerate(specs):
        path = tmp_path / f"{i:04d}.mp4"
        write_av_clip(render_av_cifar(spec, sources), path, codec=CodecSettings(fps=FPS))
        targets, known = build_targets(spec.tags, vocab=vocab)  # complete: silence is "none"
        clips.append(
            LabeledClip(
                clip_id=i,
                tensors=extract_file(path, settings=settings),
                targets=targets,
                known=known,
                group=i,
            )
        )
        speech.append(spec.speaker is not None)
        is_test.append(spec.split == "test")
    pool = [c for c, t in zip(clips, is_test, strict=True) if not t]
    test = [c for c, t in zip(clips, is_test, strict=True) if t]
    truth = np.array([s for s, t in zip(speech, is_test, strict=True) if t])
    assert 0 < truth.sum() < len(truth)  # both kinds among the held-out clips

    options = replace(round_options(settings), num_threads=1)
    result = train_model(
        kind="probe",
        vocab=vocab,
        config=round_config(settings),
        train=pool,
        val=[],
        options=options,
    )
    probs = predict_clips(
        result.model, [c.tensors for c in test], vocab=vocab, audio_frames=options.audio_frames
    ).probs
    number = vocab.group_indices["number"]
    present = 1.0 - none_probability(probs[:, number])
    auc = float(roc_auc_score(truth, present))
    print(f"speech-present AUC {auc:.3f} on {len(test)} held-out clips")
    assert auc > 0.9
