"""A scoring run stores top tags only among the tags its version was trained on (issue 22).

A real round on labels that cover a few digits of a vocabulary with forty never-labeled
independent tags, then a real scoring run: every stored top tag has a positive label in the
version's training data, and a clip gets min(k, trained tags) of them. (This probe round scores
the forty near 0, and before the change the fifth slot went to one of them; with 10,000 such
tags the probe scores them all exactly 0.5, ahead of every trained tag below it.) The stored
uncertainty is the strategy's on the trained units alone: the forty, with no positive, neither
tie nor dilute it. In-process on SQLite with real demo clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from tagloop.config import Settings
from tagloop.datasets.av_digits import build_demo_samples, write_av_dataset
from tagloop.db import tags as tag_repo
from tagloop.db.engine import session_scope
from tagloop.db.migrate import upgrade_database
from tagloop.db.models import Clip, Label, ModelVersion, Prediction
from tagloop.features.clip_tensor import load_clip_tensors
from tagloop.features.visual_embedding import ensure_visual_embeddings
from tagloop.pipeline.scoring import TOP_TAGS, label_counts, score_pool
from tagloop.pipeline.training import audio_frames_of
from tagloop.selection import score_pool as score_strategy
from tagloop.storage import BlobStore
from tagloop.training.artifact import load_artifact
from tagloop.training.predict import predict_clips
from tagloop.vocabulary import TagVocabulary
from tests.integration.test_demo_baseline import ingest_demo
from tests.integration.test_holdout_eval import train, version_metrics

pytestmark = pytest.mark.integration

N_EXTRA = 40


def test_scoring_ranks_only_the_tags_the_version_was_trained_on(tmp_path: Path) -> None:
    labels = write_av_dataset(build_demo_samples(n=14, seed=7), tmp_path / "set")
    settings = Settings(
        data_dir=tmp_path / "data",
        clip_seconds=2.0,
        train_epochs=1,
        train_patience=1,
        torch_threads=1,
        selection_strategy="balanced_cluster",
    )
    upgrade_database(settings.database_url)
    truth, _ = ingest_demo(settings, labels)
    clips = sorted(truth)
    with session_scope(settings.database_url) as s:
        for d in range(10):
            tag_repo.create_tag(s, name=str(d), group="digit")
        for i in range(N_EXTRA):
            tag_repo.create_tag(s, name=f"extra_{i:02d}")
        for c in clips[:8]:
            s.add(Label(clip_id=c, annotator="a", tags=[truth[c]]))
    version = train(settings)
    positives = version_metrics(settings, version)["train_positives"]
    trained = {t for t, n in positives.items() if n > 0}
    assert trained and trained <= {str(d) for d in range(10)}
    assert len(positives) == 10 + N_EXTRA

    assert score_pool(settings=settings) == len(clips) - 8
    with session_scope(settings.database_url) as s:
        stored = list(
            s.scalars(select(Prediction.top_tags).where(Prediction.model_version_id == version))
        )
    assert len(stored) == len(clips) - 8
    for items in stored:
        assert len(items) == min(TOP_TAGS, len(trained))
        assert {i["tag"] for i in items} <= trained, items
        ps = [i["p"] for i in items]
        assert ps == sorted(ps, reverse=True)
        assert all("p_none" in i for i in items)  # every trained tag here is a digit

    # The stored uncertainty: balanced_cluster on the digit group alone (the one unit with a
    # trained tag: all its columns and "none"), with the counts of its columns only.
    with session_scope(settings.database_url) as s:
        rows = s.execute(
            select(Prediction.clip_id, Prediction.uncertainty, Clip.tensor_uri)
            .join(Clip, Clip.id == Prediction.clip_id)
            .where(Prediction.model_version_id == version)
            .order_by(Prediction.clip_id)
        ).all()
        artifact_uri = s.get(ModelVersion, version).artifact_uri  # type: ignore[union-attr]
        model = load_artifact(BlobStore(settings.blob_url).get_bytes(str(artifact_uri)))
        counts = label_counts(s, model.vocab)
    store = BlobStore(settings.blob_url)
    tensors = [load_clip_tensors(store.get_bytes(str(uri))) for _, _, uri in rows]
    if model.model.uses_visual_embedding:  # as _score_batch does
        ensure_visual_embeddings(tensors, weights=settings.visual_encoder_weights)
    preds = predict_clips(
        model.model,
        tensors,
        vocab=model.vocab,
        audio_frames=audio_frames_of(model),
    )
    digits = model.vocab.group_indices["digit"]
    alone = score_strategy(
        preds.probs[:, digits],
        vocab=TagVocabulary.from_pairs((model.vocab.tags[j], "digit") for j in digits),
        strategy="balanced_cluster",
        tag_counts=counts[digits],
    )
    stored = np.asarray([u for _, u, _ in rows], dtype=np.float64)
    assert stored == pytest.approx(alone, abs=1e-6)
    assert np.argsort(-stored, kind="stable").tolist() == (
        np.argsort(-alone, kind="stable").tolist()
    )
    # Over every column (before the change) the forty extra units, each weighing as much as
    # the digit group, would have diluted the scores to a fraction of these.
    every = score_strategy(
        preds.probs, vocab=model.vocab, strategy="balanced_cluster", tag_counts=counts
    )
    assert np.abs(every - stored).max() > 0.1
