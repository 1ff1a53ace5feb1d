"""The co-training step of a training round (``settings.cotrain``): the model just trained on
human labels reads unlabeled pool clips with each modality's head; where one view is sure and
the other is not (``training.cotrain``), the sure view's answer becomes a pseudo-label, and the
round trains again on human labels plus those pseudo-labels.

Pseudo-labels only ever train: validation, promotion and the holdout see human labels alone,
and they are stored in their own table against the version they trained
(``GET /models/{id}/pseudo-labels``), never as labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tagloop.config import Settings
from tagloop.db.engine import session_scope
from tagloop.db.models import Clip, Label
from tagloop.storage import BlobStore
from tagloop.vocabulary import TagVocabulary

if TYPE_CHECKING:
    from tagloop.features.clip_tensor import ClipTensors
    from tagloop.fusion import FusionModel
    from tagloop.training.cotrain import CotrainOptions, PseudoLabel
    from tagloop.training.dataset import LabeledClip


@dataclass
class CotrainStep:
    """The pseudo-labels chosen and what the step looked at, for the version's config."""

    labels: list[PseudoLabel] = field(default_factory=list)
    clips: list[LabeledClip] = field(default_factory=list)
    n_candidates: int = 0

    def describe(self, settings: Settings) -> dict[str, Any]:
        return {
            "n_pseudo": len(self.clips),
            "n_candidates": self.n_candidates,
            "confident": settings.cotrain_confident,
            "unsure": settings.cotrain_unsure,
            "max_per_round": settings.cotrain_max_per_round,
        }


def candidate_uris(settings: Settings, *, exclude: set[int]) -> dict[int, str]:
    """Up to ``cotrain_max_candidates`` unlabeled pool clips with sound and pictures, spread
    over the pool (every k-th id); clips without audio have no second view to teach."""
    labeled = select(Label.id).where(Label.clip_id == Clip.id).exists()
    with session_scope(settings.database_url) as session:
        found = session.execute(
            select(Clip.id, Clip.tensor_uri)
            .where(
                Clip.status == "ready",
                Clip.split == "pool",
                Clip.has_audio.is_(True),
                Clip.tensor_uri.is_not(None),
                ~labeled,
            )
            .order_by(Clip.id)
        ).all()
    rows = [(int(c), str(u)) for c, u in found if int(c) not in exclude]
    limit = settings.cotrain_max_candidates
    if len(rows) > limit:
        step = len(rows) / limit
        rows = [rows[int(i * step)] for i in range(limit)]
    return dict(rows)


def pseudo_label_step(
    model: FusionModel,
    *,
    settings: Settings,
    store: BlobStore,
    vocab: TagVocabulary,
    exclude: set[int],
    audio_frames: int | None,
    progress: Callable[[str], None] | None = None,
) -> CotrainStep:
    """Pseudo-labels from ``model``'s two views over the candidate clips, as training rows."""
    from tagloop.features.clip_tensor import load_clip_tensors
    from tagloop.training.cotrain import CotrainOptions

    uris = candidate_uris(settings, exclude=exclude)
    if not uris:
        return CotrainStep()
    if progress is not None:
        progress(f"co-training: reading {len(uris)} unlabeled clips")
    ids = list(uris)
    tensors = [load_clip_tensors(store.get_bytes(uris[c])) for c in ids]
    options = CotrainOptions(
        confident=settings.cotrain_confident,
        unsure=settings.cotrain_unsure,
        max_per_round=settings.cotrain_max_per_round,
    )
    return pseudo_label_clips(
        model, tensors, ids, vocab=vocab, options=options, audio_frames=audio_frames
    )


def pseudo_label_clips(
    model: FusionModel,
    tensors: Sequence[ClipTensors],
    clip_ids: Sequence[int],
    *,
    vocab: TagVocabulary,
    options: CotrainOptions,
    audio_frames: int | None,
) -> CotrainStep:
    """The pure part (no database): pseudo-labels of ``model`` on these clips, as training
    rows; the benchmarks call it on in-memory clips."""
    import numpy as np

    from tagloop.training.cotrain import build_pseudo_targets, select_pseudo_labels
    from tagloop.training.dataset import LabeledClip
    from tagloop.training.predict import predict_clips

    ids = np.asarray(clip_ids, dtype=np.int64)
    if ids.size == 0:
        return CotrainStep()
    preds = predict_clips(model, list(tensors), vocab=vocab, audio_frames=audio_frames)
    present = {"audio": np.asarray([bool(t.audio_mask) for t in tensors])}
    labels = select_pseudo_labels(preds.modality_probs, present, ids, vocab=vocab, options=options)
    pseudo_ids, targets, known = build_pseudo_targets(labels, vocab=vocab)
    row = {int(c): i for i, c in enumerate(ids)}
    clips = [
        LabeledClip(clip_id=int(c), tensors=tensors[row[int(c)]], targets=t, known=k)
        for c, t, k in zip(pseudo_ids, targets, known, strict=True)
    ]
    return CotrainStep(labels=labels, clips=clips, n_candidates=int(ids.size))
