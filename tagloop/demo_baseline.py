"""The demo's reference curve: random selection on the very clips the demo ingested.

``tagloop demo`` shows active learning's curve through the running service; alone it cannot
say what the selection bought. This module replays the same budget offline with uniform
random picks (``tagloop.simulation``, the service's own training and batch code) on the clip
tensors the workers stored, so the two curves differ only by which clips got labeled.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np

from tagloop.config import Settings
from tagloop.errors import InvalidInput
from tagloop.simulation import REFERENCE, SimulationOptions, simulate_curve
from tagloop.simulation_data import SimulationSet, _digit_clip, digit_vocab
from tagloop.simulation_report import labels_to_reach


def load_demo_simulation_set(
    *, settings: Settings, truth: dict[int, str], test_clips: list[int]
) -> SimulationSet:
    """The demo's clips from the service's database and blob store, as a simulation set.

    truth: clip id -> digit (``"0"`` .. ``"9"``), every clip the demo ingested; test_clips:
    the held-out ones (never labeled). Pool clips keep their real video ids, so the
    per-video cap applies as in the service. Tensors are read as stored: frames
    ``(T, 3, frame_size, frame_size)`` uint8, log-mel ``(n_mels, S)``.
    """
    from tagloop.db.engine import session_scope
    from tagloop.db.models import Clip
    from tagloop.features.clip_tensor import load_clip_tensors
    from tagloop.fusion import FusionConfig
    from tagloop.storage import BlobStore

    unknown = sorted(set(test_clips) - set(truth))
    if unknown:
        raise InvalidInput(f"test clips without a label: {unknown[:5]}", code="bad_demo_pool")
    with session_scope(settings.database_url) as session:
        rows = session.query(Clip.id, Clip.video_id, Clip.tensor_uri).filter(
            Clip.id.in_(list(truth))
        )
        found = {int(c): (int(v), uri) for c, v, uri in rows}
    missing = sorted(c for c in truth if c not in found or not found[c][1])
    if missing:
        raise InvalidInput(
            f"{len(missing)} demo clips have no stored tensors (e.g. {missing[:5]})",
            code="missing_clip_tensors",
        )
    store = BlobStore(settings.blob_url)
    held_out = set(test_clips)
    pool, test, videos = [], [], []
    for clip_id in sorted(truth):
        digit = truth[clip_id]
        if digit not in {str(d) for d in range(10)}:
            raise InvalidInput(f"clip {clip_id}: {digit!r} is not a digit", code="bad_demo_pool")
        video_id, uri = found[clip_id]
        clip = _digit_clip(clip_id, load_clip_tensors(store.get_bytes(str(uri))), int(digit))
        if clip_id in held_out:
            test.append(clip)
        else:
            pool.append(clip)
            videos.append(video_id)
    if not pool or not test:
        raise InvalidInput("the demo needs both pool and test clips", code="bad_demo_pool")
    config = FusionConfig(
        frames_per_clip=settings.frames_per_clip,
        frame_size=settings.frame_size,
        n_mels=settings.n_mels,
    )
    return SimulationSet(
        name="demo",
        pool=pool,
        test=test,
        pool_videos=np.asarray(videos, dtype=np.int64),
        vocab=digit_vocab(),
        config=config,
    )


def random_curve(
    data: SimulationSet, *, label_counts: list[int], seed: int = 0, settings: Settings
) -> list[tuple[int, float]]:
    """(labels, held-out accuracy) per round of random selection at the demo's label counts.

    Trains like the service's ``train_round``: every round ``settings.train_epochs`` epochs
    with its patience, batch size and learning rate, warm-started from the previous round
    (the service warm-starts from the promoted version). The seed round is the service's
    diverse seed batch. A pool that runs dry ends the curve early.
    """
    from tagloop.training.loop import TrainOptions

    steps = {b - a for a, b in pairwise(label_counts)}
    if not label_counts or label_counts[0] < 1 or len(steps) > 1 or min(steps, default=1) < 1:
        raise InvalidInput(
            f"label counts must rise in equal steps from >= 1, got {label_counts}",
            code="bad_label_counts",
        )
    service = TrainOptions()  # the batch size and learning rate train_round uses
    options = SimulationOptions(
        strategies=(REFERENCE,),
        seed_size=label_counts[0],
        batch_size=steps.pop() if steps else label_counts[0],
        rounds=len(label_counts) - 1,
        seeds=1,
        epochs=settings.train_epochs,
        seed_epochs=settings.train_epochs,
        train_batch_size=service.batch_size,
        min_steps=1,  # the service has no step floor
        patience=settings.train_patience,
        lr=service.lr,
        kind=settings.model_kind,
        probe_below=settings.probe_below_labels,
        val_fraction=settings.val_fraction,
        per_video_cap=settings.per_video_cap,
        audio_frames=settings.audio_frames,
        num_threads=settings.torch_threads,
    )
    records = simulate_curve(data, strategy=REFERENCE, seed=seed, options=options)
    return [(r.n_labels, r.accuracy) for r in records]


def _show(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def format_side_by_side(
    active: list[tuple[int, float | None]], random: list[tuple[int, float]]
) -> str:
    """Both curves as an aligned table, one row per label count, and a verdict line.

    The verdict reads labels off the active curve (linear interpolation between rounds, as
    ``tagloop simulate`` does) where it first reaches random's final accuracy. A point
    without an accuracy (no model had scored the held-out clips yet) shows ``-``.
    """
    act, rnd = dict(active), dict(random)
    lines = [f"{'labels':>6}  {'active learning':>15}  {'random':>6}"]
    lines += [f"{n:>6}  {_show(act.get(n)):>15}  {_show(rnd.get(n)):>6}" for n in sorted(act | rnd)]
    known = sorted((n, a) for n, a in active if a is not None)
    if not random or not known:
        lines.append("no comparison: a curve has no accuracy yet")
        return "\n".join(lines)
    final_n, final_acc = random[-1]
    reached = labels_to_reach(
        np.asarray([n for n, _ in known]), np.asarray([a for _, a in known]), target=final_acc
    )
    if reached is None:
        lines.append(
            f"active learning did not reach random's final accuracy {final_acc:.3f} "
            f"({final_n} labels) within {known[-1][0]} labels"
        )
    else:
        lines.append(
            f"active learning reached random's final accuracy {final_acc:.3f} with "
            f"{reached:.0f} labels ({100 * reached / final_n:.0f}% of random's {final_n})"
        )
    return "\n".join(lines)


def plot_side_by_side(
    active: list[tuple[int, float | None]], random: list[tuple[int, float]], path: Path
) -> Path:
    """Both learning curves (labels -> held-out accuracy; a gap where no model scored yet)
    with the chance line, as a PNG."""
    from tagloop.demo import plot_accuracy_curves

    series = [
        (label, [n for n, _ in curve], [a for _, a in curve], {"marker": marker})
        for curve, label, marker in ((active, "active learning", "o"), (random, "random", "s"))
    ]
    return plot_accuracy_curves(
        series,
        path,
        title="tagloop demo: active learning vs random selection",
        ylabel="held-out accuracy",
    )
