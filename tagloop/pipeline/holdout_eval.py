"""Every model version measured on the same holdout labels.

A round measures its new version on the holdout labels there are at the time. Holdout labels
keep arriving (or the holdout is drawn after some versions exist), so after each round the
versions whose holdout figures were taken on fewer labels are measured again, newest first,
so the learning curve compares versions on the same clips.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from tagloop.config import Settings
from tagloop.db import labels as label_repo
from tagloop.db.engine import session_scope
from tagloop.db.models import Clip, ModelVersion
from tagloop.storage import BlobStore

log = logging.getLogger(__name__)

MEASURED = ("ready", "promoted", "retired")
# Bounded work per round: the newest versions are the ones people compare.
MAX_VERSIONS = 20


def refresh_holdout_metrics(*, settings: Settings) -> list[int]:
    """Measure again the versions whose ``metrics.holdout`` counts fewer clips than the
    holdout has labels now; returns their ids."""
    from tagloop.features.clip_tensor import load_clip_tensors
    from tagloop.pipeline.training import audio_frames_of, evaluate_on
    from tagloop.training.artifact import load_artifact
    from tagloop.training.dataset import LabeledClip
    from tagloop.training.targets import build_targets

    store = BlobStore(settings.blob_url)
    with session_scope(settings.database_url) as session:
        labels = label_repo.latest_labels(session)
        unsure = label_repo.latest_unsure_groups(session)
        rows = session.execute(
            select(Clip.id, Clip.tensor_uri).where(
                Clip.split == "holdout", Clip.id.in_(list(labels)), Clip.tensor_uri.is_not(None)
            )
        ).all()
        holdout = {int(c): (str(u), labels[int(c)]) for c, u in rows}
        versions = session.scalars(
            select(ModelVersion)
            .where(ModelVersion.status.in_(MEASURED), ModelVersion.artifact_uri.is_not(None))
            .order_by(ModelVersion.id.desc())
            .limit(MAX_VERSIONS)
        )
        todo = [
            (v.id, str(v.artifact_uri))
            for v in versions
            if ((v.metrics or {}).get("holdout") or {}).get("n_clips") != len(holdout)
        ]
    if not holdout or not todo:
        return []
    tensors = {c: load_clip_tensors(store.get_bytes(uri)) for c, (uri, _) in holdout.items()}
    done = []
    for version_id, artifact_uri in todo:
        model = load_artifact(store.get_bytes(artifact_uri))
        clips = []
        for clip_id, (_, tags) in sorted(holdout.items()):
            targets, known = build_targets(
                tags, vocab=model.vocab, unsure_groups=unsure.get(clip_id, ())
            )
            clips.append(LabeledClip(clip_id, tensors[clip_id], targets, known))
        measured = evaluate_on(
            model.model, clips, vocab=model.vocab, audio_frames=audio_frames_of(model)
        )
        with session_scope(settings.database_url) as session:
            version = session.get(ModelVersion, version_id)
            if version is None:
                continue  # deleted meanwhile
            metrics: dict[str, Any] = dict(version.metrics or {})
            metrics["holdout"] = measured
            version.metrics = metrics  # a new dict, so the JSON column is written
        done.append(version_id)
    log.info("holdout metrics refreshed for versions %s on %d clips", done, len(holdout))
    return done
