"""Cold start: what pretraining on the unlabeled pool, and co-training on top of it, buy at 50,
100 and 200 labels (``cold_start_acc_{50,100,200}``).

Data: the FSDD+MNIST AV-digits set of ``bench_fusion`` (35% image energy, 20 dB) through the
ingestion path (``av_digits_tensors``). Pool: the 2,500 clips of the five training speakers;
test: the 500 clips of the held-out speaker (theo), which pretraining never sees either.

Pretraining runs ONCE per benchmark run, with seed 0: ``pack_pool`` over the pool's clips (in
row order) and ``pretrain_encoders`` with the service job's options (``pretrain_options``: the
600-step floor included; num_threads=2), its ``save_encoder_state`` bytes written to
``benchmarks/work/cold_start/encoders_<key>.pt`` (``encoders_path``: one file per option set,
so a change of the defaults or a concurrent run with other options never swaps the weights
under a run reading them) and passed to every pretrained round as
``Backbone(visual=path, audio=path)``, as the service's rounds load a pretraining run. The
three label seeds all start from that one run, so the
spread between seeds is the label draw's and the training's, not pretraining's.

For each seed (0, 1, 2) the pool is shuffled once and each budget takes its first ``budget``
clips (``bench_low_label.sample_budgets``: one seed's label sets are nested). Variants, each a
first round of a fresh service with default ``Settings()`` (``train_service_round``; the kind
follows the capacity policy: the linear probe below ``probe_below_labels``, else CentralNet;
at the default 500 every budget here is the probe, and the table records the kind served):

- ``scratch``: no backbone (also at 400 labels, for the second target);
- ``pretrained``: the backbone (the probe appends the frozen pretrained branch embeddings;
  CentralNet starts its branches from them and fine-tunes);
- ``pretrained_cotrain``: the ``pretrained`` model pseudo-labels the unlabeled pool clips with
  audio (``pipeline.cotraining.pseudo_label_clips``; candidates as ``candidate_uris`` picks
  them: by id, every k-th down to ``cotrain_max_candidates``) with the Settings' thresholds,
  then the round trains again as ``pipeline.training`` does: the same kind (chosen on the
  human labels), training clips = the human training split + the pseudo-labeled clips,
  validation = the human validation split only. The pseudo-labels' accuracy against the true
  digits is recorded.

Targets (means over seeds), ``cold_start_targets_met``: ``pretrained_cotrain`` at 100 labels
at least 10 points above ``scratch`` at 100, and at 200 labels above ``scratch`` at 400.

Threshold sweep (``--sweep``, not part of ``run``): the co-training variant again at other
``(confident, unsure, max_per_round)`` settings (default ``SWEEP``), reusing the saved
encoders; the pretrained
models are retrained (deterministic for a seed, so the same ones).

    python -m tests.benchmarks.bench_cold_start [--quick] [--budgets 50,100]
    python -m tests.benchmarks.bench_cold_start --sweep [0.95/0.6 ...] [--budgets ...]
    (neither writes the results file; their figures go to benchmarks/work/cold_start/)

``--quick`` (or ``COLD_START_QUICK=1`` under ``run``): one seed at 100 labels (and scratch at
400). ``COLD_START_PRETRAIN='{"epochs": 48}'`` changes the pretraining options (a diagnostic:
the figures are then not the defaults'; the weights get their own file). The
curve goes to ``benchmarks/cold_start.png``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tests.benchmarks.av_digits_tensors import AVDigitsTensors, load_av_digits_tensors
from tests.benchmarks.bench_fusion import IMAGE_ENERGY, SNR_DB
from tests.benchmarks.bench_low_label import (
    labeled_clips,
    mean_std,
    measure_test_accuracy,
    sample_budgets,
    service_kind,
    train_service_round,
    uptime,
)
from tests.benchmarks.common import REPO, WORK, finish_accuracy_plot

if TYPE_CHECKING:
    from tagloop.config import Settings
    from tagloop.features.clip_tensor import ClipTensors
    from tagloop.fusion import FusionModel
    from tagloop.training.backbone import Backbone
    from tagloop.training.cotrain import CotrainOptions, PseudoLabel
    from tagloop.training.dataset import LabeledClip
    from tagloop.training.pretrain import PretrainOptions
    from tagloop.vocabulary import TagVocabulary

BUDGETS = (50, 100, 200)
SCRATCH_ONLY = (400,)
SEEDS = (0, 1, 2)
QUICK_BUDGETS = (100,)
QUICK_SEEDS = (0,)
PRETRAIN_SEED = 0
VARIANTS = ("scratch", "pretrained", "pretrained_cotrain")
MARGIN = 0.10  # pretrained_cotrain at MARGIN_AT labels vs scratch at MARGIN_AT
MARGIN_AT = 100
MATCH_AT = 200  # pretrained_cotrain at MATCH_AT labels vs scratch at MATCH_SCRATCH
MATCH_SCRATCH = 400
# (confident, unsure, max_per_round). The cap takes the most confident decisions first, so a
# higher ``confident`` changes nothing while more than the cap qualify: the levers are
# ``unsure`` (more students to choose the surest teachers among) and the cap itself.
SWEEP = ((0.9, 0.8, 200), (0.99, 0.9, 200), (0.9, 0.6, 50))
CURVE_PNG = REPO / "benchmarks" / "cold_start.png"
ENCODER_DIR = WORK / "cold_start"
SWEEP_JSON = WORK / "cold_start" / "sweep.json"
RESULT_JSON = WORK / "cold_start" / "result.json"  # what ``__main__`` found (run.py merges ``out``)


# --- pure parts ---------------------------------------------------------------------------


def candidate_rows(pool_rows: np.ndarray, *, exclude: np.ndarray, limit: int) -> np.ndarray:
    """The co-training candidates among ``pool_rows`` (clips with audio): those not in
    ``exclude``, sorted, then every k-th down to ``limit`` as ``candidate_uris`` strides them
    (position ``int(i * n / limit)`` for ``i < limit``)."""
    rows = np.setdiff1d(np.asarray(pool_rows), np.asarray(exclude))  # sorted, unique
    if len(rows) > limit:
        rows = rows[(np.arange(limit) * (len(rows) / limit)).astype(np.int64)]
    return rows


def pseudo_label_accuracy(
    labels: Sequence[PseudoLabel], digits: np.ndarray
) -> tuple[float | None, dict[str, dict[str, float]]]:
    """Share of pseudo-labels whose tags are exactly ``[digit_<true digit of clip_id>]``
    (None when there are none), and per teaching view ``{"n", "accuracy"}``."""
    hits: dict[str, list[bool]] = {}
    for label in labels:
        correct = label.tags == [f"digit_{int(digits[label.clip_id])}"]
        hits.setdefault(label.source, []).append(correct)
    every = [h for source in hits.values() for h in source]
    by_source = {
        source: {"n": len(h), "accuracy": float(np.mean(h))} for source, h in sorted(hits.items())
    }
    return (float(np.mean(every)) if every else None), by_source


def summarize(
    records: Sequence[Mapping[str, Any]], *, budgets: Sequence[int], variants: Sequence[str]
) -> dict[int, dict[str, dict[str, Any]]]:
    """Per-run records ``{"budget", "seed", "<variant>": acc, ...}`` -> budget -> variant ->
    ``{"mean", "std", "runs"}`` (sample std over seeds; a variant absent at a budget is left
    out)."""
    table: dict[int, dict[str, dict[str, Any]]] = {}
    for budget in sorted(budgets):
        rows = [r for r in records if r["budget"] == budget]
        entry: dict[str, dict[str, Any]] = {}
        for name in variants:
            runs = [float(r[name]) for r in rows if r.get(name) is not None]
            if runs:
                mean, std = mean_std(runs)
                entry[name] = {"mean": mean, "std": std, "runs": runs}
        table[int(budget)] = entry
    return table


def targets_met(
    table: Mapping[int, Mapping[str, Mapping[str, Any]]],
    *,
    margin: float = MARGIN,
    margin_at: int = MARGIN_AT,
    match_at: int = MATCH_AT,
    match_scratch: int = MATCH_SCRATCH,
) -> dict[str, bool | None]:
    """Both targets on the means: ``pretrained_cotrain`` at ``margin_at`` labels >= scratch
    there + ``margin``, and at ``match_at`` labels > scratch at ``match_scratch`` (None: a
    figure is missing)."""
    eps = 1e-9  # accuracies are counts over 500 clips: 0.10 must not fail on float rounding

    def mean(budget: int, variant: str) -> float | None:
        cell = table.get(budget, {}).get(variant)
        return None if cell is None else float(cell["mean"])

    ours, theirs = mean(margin_at, "pretrained_cotrain"), mean(margin_at, "scratch")
    first = None if ours is None or theirs is None else ours >= theirs + margin - eps
    ours, theirs = mean(match_at, "pretrained_cotrain"), mean(match_scratch, "scratch")
    second = None if ours is None or theirs is None else ours > theirs
    return {
        f"cotrain_{margin_at}_at_least_scratch_{margin_at}_plus_{round(margin * 100)}pt": first,
        f"cotrain_{match_at}_above_scratch_{match_scratch}": second,
    }


def public_cell(cell: Mapping[str, Any]) -> dict[str, float]:
    return {"mean": float(cell["mean"]), "std": float(cell["std"])}


# --- pretraining and the co-training round --------------------------------------------------


def pretrain_options(overrides: Mapping[str, Any] | None = None) -> PretrainOptions:
    """The options the service's pretraining job uses under default ``Settings()`` (the step
    floor included: ``pipeline.pretrain.pretrain_options``) with seed ``PRETRAIN_SEED`` and 2
    threads, then ``overrides``."""
    from tagloop.config import Settings
    from tagloop.pipeline.pretrain import pretrain_options as service_options
    from tagloop.training.pretrain import PretrainOptions

    service = service_options(Settings(), seed=PRETRAIN_SEED).to_dict()
    return PretrainOptions.from_dict({**service, "num_threads": 2, **dict(overrides or {})})


def encoders_path(options: PretrainOptions, *, folder: Path = ENCODER_DIR) -> Path:
    """``folder/encoders_<key>.pt``, the key a hash of every option: one file per option set."""
    text = json.dumps(options.to_dict(), sort_keys=True)
    return folder / f"encoders_{hashlib.sha256(text.encode()).hexdigest()[:12]}.pt"


def pretrain_backbone(
    data: AVDigitsTensors,
    pool_rows: np.ndarray,
    *,
    options: PretrainOptions,
    settings: Settings,
    folder: Path = ENCODER_DIR,
) -> tuple[Path, dict[str, Any]]:
    """``pretrain_clips`` on the AV-digits rows ``pool_rows``."""
    from tagloop.features.clip_tensor import ClipTensors

    stream = (
        ClipTensors(
            frames=data.frames[r], logmel=data.logmel[r], audio_mask=bool(data.audio_mask[r])
        )
        for r in pool_rows
    )
    return pretrain_clips(
        stream, total=len(pool_rows), options=options, settings=settings, folder=folder
    )


def pretrain_clips(
    stream: Iterable[ClipTensors],
    *,
    total: int,
    options: PretrainOptions,
    settings: Settings,
    folder: Path = ENCODER_DIR,
) -> tuple[Path, dict[str, Any]]:
    """Pretrain both branches on the ``total`` clips of ``stream`` with ``options``, write
    ``save_encoder_state`` to ``encoders_path(options, folder=folder)`` (atomically: a reader
    never sees half a file; another pool needs another folder); (path, what it took)."""
    from tagloop.fusion import FusionConfig
    from tagloop.training.pretrain import pack_pool, pretrain_encoders, save_encoder_state

    config = FusionConfig(
        frames_per_clip=settings.frames_per_clip,
        frame_size=settings.frame_size,
        n_mels=settings.n_mels,
    )
    start = time.perf_counter()
    pool = pack_pool(stream, config=config, options=options, total=total)
    pack_seconds = time.perf_counter() - start

    def report(epoch: int, epochs: int, record: dict[str, Any]) -> None:
        print(f"[cold_start] pretrain epoch {epoch}/{epochs} {json.dumps(record)}", flush=True)

    result = pretrain_encoders(pool, config=config, options=options, progress=report)
    path = encoders_path(options, folder=folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    partial.write_bytes(save_encoder_state(result))
    os.replace(partial, path)
    return path, {
        "seconds": round(pack_seconds + result.seconds, 1),
        "pack_seconds": round(pack_seconds, 1),
        "pretrain_seconds": round(result.seconds, 1),
        "n_clips": result.n_clips,
        "options": options.to_dict(),
        "history": result.history,
        "path": str(path.relative_to(REPO)),
    }


def cached_encoders(
    data: AVDigitsTensors,
    pool_rows: np.ndarray,
    *,
    options: PretrainOptions,
    settings: Settings,
    folder: Path = ENCODER_DIR,
) -> tuple[Path, dict[str, Any] | None]:
    """The encoders file for ``options`` in ``folder``, pretrained on ``pool_rows`` only when
    no earlier run left it there; (path, ``pretrain_backbone``'s record when it ran now, None
    when the file was reused)."""
    path = encoders_path(options, folder=folder)
    if path.is_file():
        return path, None
    return pretrain_backbone(data, pool_rows, options=options, settings=settings, folder=folder)


def train_with_pseudo(
    labeled: list[LabeledClip],
    pseudo: list[LabeledClip],
    *,
    kind: str,
    vocab: TagVocabulary,
    seed: int,
    settings: Settings,
    backbone: Backbone | None,
) -> Any:
    """The round's second training, as ``pipeline.training`` runs it after co-training: the
    human labels split as ``train_service_round`` splits them, ``pseudo`` added to the
    training side only, the kind the human labels chose. -> ``TrainResult``."""
    from tagloop.fusion import FusionConfig
    from tagloop.training.loop import TrainOptions, train_model
    from tagloop.training.split import assign_split

    split = {
        c.clip_id: assign_split(c.clip_id, val_fraction=settings.val_fraction) for c in labeled
    }
    train = [c for c in labeled if split[c.clip_id] == "train"]
    val = [c for c in labeled if split[c.clip_id] == "val"]
    if not val or not train:
        train = val = labeled
    config = FusionConfig(
        frames_per_clip=settings.frames_per_clip,
        frame_size=settings.frame_size,
        n_mels=settings.n_mels,
    )
    options = TrainOptions(
        audio_frames=settings.audio_frames,
        epochs=settings.train_epochs,
        patience=settings.train_patience,
        num_threads=settings.torch_threads,
        seed=seed,
    )
    return train_model(
        kind=kind,
        vocab=vocab,
        config=config,
        train=train + pseudo,
        val=val,
        options=options,
        backbone=backbone,
    )


def cotrain_options(*, confident: float, unsure: float, max_per_round: int) -> CotrainOptions:
    """What ``pseudo_label_step`` builds from the settings (``cotrain_confident``,
    ``cotrain_unsure``, ``cotrain_max_per_round``; the per-class cap at its default)."""
    from tagloop.training.cotrain import CotrainOptions

    return CotrainOptions(confident=confident, unsure=unsure, max_per_round=max_per_round)


def run_cotrain(
    model: FusionModel,
    labeled: list[LabeledClip],
    *,
    clips: list[LabeledClip],
    candidates: np.ndarray,
    digits: np.ndarray,
    test: list[LabeledClip],
    kind: str,
    options: CotrainOptions,
    vocab: TagVocabulary,
    seed: int,
    settings: Settings,
    backbone: Backbone,
) -> dict[str, Any]:
    """Pseudo-label ``candidates`` with ``model``, retrain, test: a record."""
    from tagloop.pipeline.cotraining import pseudo_label_clips

    start = time.perf_counter()
    step = pseudo_label_clips(
        model,
        [clips[r].tensors for r in candidates],
        [int(r) for r in candidates],
        vocab=vocab,
        options=options,
        audio_frames=settings.audio_frames,
    )
    label_seconds = time.perf_counter() - start
    accuracy, by_source = pseudo_label_accuracy(step.labels, digits)
    record: dict[str, Any] = {
        "confident": options.confident,
        "unsure": options.unsure,
        "max_per_round": options.max_per_round,
        "n_candidates": step.n_candidates,
        "n_pseudo": len(step.clips),
        "pseudo_accuracy": accuracy,
        "by_source": by_source,
        "label_seconds": round(label_seconds, 2),
    }
    if not step.clips:  # the service keeps the first model when no clip qualified
        record["accuracy"] = None
        record["retrained"] = False
        return record
    result = train_with_pseudo(
        labeled, step.clips, kind=kind, vocab=vocab, seed=seed, settings=settings, backbone=backbone
    )
    record["accuracy"] = measure_test_accuracy(
        result.model, test, vocab=vocab, audio_frames=settings.audio_frames
    )
    record["retrained"] = True
    record["epochs_run"] = result.epochs_run
    record["train_seconds"] = round(result.seconds, 2)
    return record


# --- the run -------------------------------------------------------------------------------


def round_detail(done: Any) -> dict[str, Any]:
    return {
        "kind": done.kind,
        "n_train": done.n_train,
        "n_val": done.n_val,
        "val_is_train": done.val_is_train,
        "epochs_run": done.epochs_run,
        "seconds": round(done.seconds, 2),
    }


def run_seed(
    data: AVDigitsTensors,
    clips: list[LabeledClip],
    *,
    seed: int,
    budgets: Sequence[int],
    settings: Settings,
    vocab: TagVocabulary,
    backbone: Backbone,
    thresholds: Sequence[tuple[float, float, int]],
    with_scratch: bool = True,
) -> list[dict[str, Any]]:
    """Every budget of one seed; budgets in ``SCRATCH_ONLY`` train ``scratch`` alone. The
    first ``thresholds`` (confident, unsure, max_per_round) gives ``pretrained_cotrain``; every
    one is in ``cotrain``."""
    is_test = data.is_test.numpy()
    rows = np.arange(len(is_test))
    pool_rows = rows[~is_test]
    with_audio = rows[~is_test & data.audio_mask.numpy()]
    test = [clips[r] for r in rows[is_test]]
    digits = data.digit.numpy()
    records = []
    for budget, chosen in sample_budgets(pool_rows, budgets, seed=seed).items():
        labeled = [clips[r] for r in chosen]
        kind = service_kind(len(labeled), settings=settings)
        record: dict[str, Any] = {"budget": budget, "seed": seed, "kind": kind}
        if with_scratch:
            done = train_service_round(labeled, vocab=vocab, seed=seed, settings=settings)
            record["scratch"] = measure_test_accuracy(
                done.model, test, vocab=vocab, audio_frames=done.audio_frames
            )
            record["scratch_detail"] = round_detail(done)
        if budget in SCRATCH_ONLY:
            print(f"[cold_start] {json.dumps(record)}", flush=True)
            records.append(record)
            continue
        done = train_service_round(
            labeled, vocab=vocab, seed=seed, settings=settings, backbone=backbone
        )
        record["pretrained"] = measure_test_accuracy(
            done.model, test, vocab=vocab, audio_frames=done.audio_frames
        )
        record["pretrained_detail"] = round_detail(done)
        candidates = candidate_rows(
            with_audio, exclude=chosen, limit=settings.cotrain_max_candidates
        )
        record["cotrain"] = []
        for confident, unsure, cap in thresholds:
            step = run_cotrain(
                done.model,
                labeled,
                clips=clips,
                candidates=candidates,
                digits=digits,
                test=test,
                kind=kind,
                options=cotrain_options(confident=confident, unsure=unsure, max_per_round=cap),
                vocab=vocab,
                seed=seed,
                settings=settings,
                backbone=backbone,
            )
            if step["accuracy"] is None:  # nothing qualified: the round keeps the first model
                step["accuracy"] = record["pretrained"]
            record["cotrain"].append(step)
        record["pretrained_cotrain"] = record["cotrain"][0]["accuracy"]
        print(f"[cold_start] {json.dumps(record)}", flush=True)
        records.append(record)
    return records


def plot_cold_start(
    table: Mapping[int, Mapping[str, Mapping[str, Any]]],
    path: Path,
    *,
    title: str,
    probe_below: int | None = None,
    ylabel: str = "test accuracy (mean ± std over seeds)",
    chance: float | None = 0.1,
) -> Path:
    """A score (default: accuracy) against labels (log x), mean ± std band per variant, the
    chance line, and where the capacity policy switches from the probe to the full model
    (``probe_below``)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    styles: dict[str, dict[str, Any]] = {
        "scratch": {"color": "black", "marker": "o", "label": "scratch"},
        "pretrained": {"color": "tab:blue", "marker": "s", "label": "pretrained on the pool"},
        "pretrained_cotrain": {
            "color": "tab:green",
            "marker": "^",
            "linewidth": 2.2,
            "label": "pretrained + co-training",
        },
    }
    budgets = sorted(table)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, style in styles.items():
        xs = [b for b in budgets if name in table[b]]
        if not xs:
            continue
        mean = np.asarray([table[b][name]["mean"] for b in xs])
        std = np.asarray([table[b][name]["std"] for b in xs])
        (line,) = ax.plot(xs, mean, **style)
        ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    if probe_below and probe_below <= max(budgets):
        ax.axvline(
            probe_below, color="grey", linewidth=0.8, linestyle="-.", label="probe → CentralNet"
        )
    return finish_accuracy_plot(
        fig, ax, path, title=title, log_budgets=list(budgets), ylabel=ylabel, chance=chance
    )


def setting_of(settings: Settings, data: AVDigitsTensors) -> dict[str, Any]:
    return {
        "image_energy": IMAGE_ENERGY,
        "snr_db": SNR_DB,
        "test_speaker": "theo",
        "pool": int((~data.is_test).sum()),
        "test": int(data.is_test.sum()),
        "probe_below_labels": settings.probe_below_labels,
        "model_kind": settings.model_kind,
        "train_epochs": settings.train_epochs,
        "train_patience": settings.train_patience,
        "torch_threads": settings.torch_threads,
        "audio_frames": settings.audio_frames,
        "cotrain_confident": settings.cotrain_confident,
        "cotrain_unsure": settings.cotrain_unsure,
        "cotrain_max_per_round": settings.cotrain_max_per_round,
        "cotrain_max_candidates": settings.cotrain_max_candidates,
        "pretrain_seed": PRETRAIN_SEED,
    }


def run(
    *,
    out: dict[str, Any],
    seeds: Sequence[int] | None = None,
    budgets: Sequence[int] | None = None,
) -> None:
    from tagloop.config import Settings
    from tagloop.simulation_data import digit_vocab
    from tagloop.training.backbone import Backbone

    quick = os.environ.get("COLD_START_QUICK", "") not in ("", "0")
    seeds = tuple(seeds if seeds is not None else QUICK_SEEDS if quick else SEEDS)
    budgets = tuple(sorted(budgets if budgets is not None else QUICK_BUDGETS if quick else BUDGETS))
    start = time.perf_counter()
    load_before = uptime()
    settings = Settings()
    vocab = digit_vocab()
    data = load_av_digits_tensors(image_energy=IMAGE_ENERGY, snr_db=SNR_DB)
    clips = labeled_clips(data, vocab=vocab)
    pool_rows = np.flatnonzero((~data.is_test).numpy())
    overrides = json.loads(os.environ.get("COLD_START_PRETRAIN", "") or "{}")
    encoders, pretraining = pretrain_backbone(
        data, pool_rows, options=pretrain_options(overrides), settings=settings
    )
    pretraining["overrides"] = overrides
    backbone = Backbone(visual=encoders, audio=encoders)
    thresholds = [
        (settings.cotrain_confident, settings.cotrain_unsure, settings.cotrain_max_per_round)
    ]
    records: list[dict[str, Any]] = []
    for seed in seeds:
        records += run_seed(
            data,
            clips,
            seed=seed,
            budgets=(*budgets, *SCRATCH_ONLY),
            settings=settings,
            vocab=vocab,
            backbone=backbone,
            thresholds=thresholds,
        )
    table = summarize(records, budgets=(*budgets, *SCRATCH_ONLY), variants=VARIANTS)
    plot_cold_start(
        table,
        CURVE_PNG,
        title=f"AV digits, speaker theo held out: cold start ({len(seeds)} seeds)",
        probe_below=settings.probe_below_labels,
    )
    for budget in budgets:
        out[f"cold_start_acc_{budget}"] = {v: public_cell(c) for v, c in table[budget].items()}
    out["cold_start_scratch_400"] = public_cell(table[MATCH_SCRATCH]["scratch"])
    out["cold_start_targets_met"] = targets_met(table)
    out["cold_start_pretrain_seconds"] = pretraining["seconds"]
    out["cold_start"] = {
        "seconds": round(time.perf_counter() - start, 1),
        "setting": {**setting_of(settings, data), "seeds": list(seeds), "budgets": list(budgets)},
        "table": {str(b): row for b, row in table.items()},
        "kinds": {str(b): sorted({r["kind"] for r in records if r["budget"] == b}) for b in table},
        "cotrain": {
            str(b): {
                "n_pseudo": [r["cotrain"][0]["n_pseudo"] for r in records if r["budget"] == b],
                "pseudo_accuracy": [
                    r["cotrain"][0]["pseudo_accuracy"] for r in records if r["budget"] == b
                ],
            }
            for b in budgets
        },
        "pretraining": pretraining,
        "runs": records,
        "curve_png": str(CURVE_PNG.relative_to(REPO)),
        "load_before": load_before,
        "load_after": uptime(),
    }


def run_sweep(
    *,
    pairs: Sequence[tuple[float, float, int]] = SWEEP,
    seeds: Sequence[int] = SEEDS,
    budgets: Sequence[int] = BUDGETS,
) -> list[dict[str, Any]]:
    """Co-training at every ``(confident, unsure, max_per_round)`` (pretrained variants only),
    from the
    saved encoders of a ``run`` with the default options (pretrained here when missing)."""
    from tagloop.config import Settings
    from tagloop.simulation_data import digit_vocab
    from tagloop.training.backbone import Backbone

    settings = Settings()
    vocab = digit_vocab()
    data = load_av_digits_tensors(image_energy=IMAGE_ENERGY, snr_db=SNR_DB)
    clips = labeled_clips(data, vocab=vocab)
    encoders = encoders_path(pretrain_options())
    if not encoders.exists():
        pool_rows = np.flatnonzero((~data.is_test).numpy())
        pretrain_backbone(data, pool_rows, options=pretrain_options(), settings=settings)
    backbone = Backbone(visual=encoders, audio=encoders)
    records: list[dict[str, Any]] = []
    for seed in seeds:
        records += run_seed(
            data,
            clips,
            seed=seed,
            budgets=budgets,
            settings=settings,
            vocab=vocab,
            backbone=backbone,
            thresholds=pairs,
            with_scratch=False,
        )
    return records


def format_sweep(records: Sequence[Mapping[str, Any]]) -> str:
    """One line per (budget, thresholds): accuracy, n_pseudo and pseudo-label accuracy."""
    lines = ["labels | confident/unsure/cap | pretrained | + cotrain | n_pseudo | pseudo acc"]
    for budget in sorted({r["budget"] for r in records}):
        rows = [r for r in records if r["budget"] == budget]
        base = mean_std([r["pretrained"] for r in rows])
        for i, first in enumerate(rows[0]["cotrain"]):
            steps = [r["cotrain"][i] for r in rows]
            acc = mean_std([s["accuracy"] for s in steps])
            pseudo = [s["pseudo_accuracy"] for s in steps if s["pseudo_accuracy"] is not None]
            lines.append(
                f"{budget} | {first['confident']}/{first['unsure']}/{first['max_per_round']} | "
                f"{base[0]:.3f} ± {base[1]:.3f} | {acc[0]:.3f} ± {acc[1]:.3f} | "
                f"{[s['n_pseudo'] for s in steps]} | "
                f"{np.mean(pseudo) if pseudo else float('nan'):.3f}"
            )
    return "\n".join(lines)


def format_table(out: Mapping[str, Any]) -> str:
    lines = ["labels | " + " | ".join(VARIANTS) + " | kind"]
    kinds = out["cold_start"]["kinds"]
    budgets = sorted(int(k.rsplit("_", 1)[1]) for k in out if k.startswith("cold_start_acc_"))
    for number in budgets:
        budget, row = str(number), out[f"cold_start_acc_{number}"]
        cells = [
            f"{row[v]['mean']:.3f} ± {row[v]['std']:.3f}" if v in row else "-" for v in VARIANTS
        ]
        lines.append(f"{budget} | " + " | ".join(cells) + f" | {kinds[budget]}")
    s400 = out["cold_start_scratch_400"]
    lines.append(
        f"400 | {s400['mean']:.3f} ± {s400['std']:.3f} | - | - | {kinds[str(MATCH_SCRATCH)]}"
    )
    return "\n".join(lines)


def parse_setting(text: str, *, default_cap: int) -> tuple[float, float, int]:
    """``"0.9/0.8"`` -> ``(0.9, 0.8, default_cap)``; ``"0.9/0.6/50"`` -> ``(0.9, 0.6, 50)``."""
    parts = text.split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"expected CONFIDENT/UNSURE[/MAX_PER_ROUND], got {text!r}")
    cap = int(parts[2]) if len(parts) == 3 else default_cap
    return float(parts[0]), float(parts[1]), cap


def main(argv: Sequence[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_cold_start")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--sweep",
        nargs="*",
        metavar="CONFIDENT/UNSURE[/MAX_PER_ROUND]",
        help="co-training settings only (cap default: the Settings')",
    )
    parser.add_argument("--budgets", type=lambda t: [int(b) for b in t.split(",")])
    args = parser.parse_args(argv)
    if args.quick:
        os.environ["COLD_START_QUICK"] = "1"
    start = time.perf_counter()
    if args.sweep is not None:
        from tagloop.config import Settings

        cap = Settings().cotrain_max_per_round
        found = run_sweep(
            pairs=[parse_setting(p, default_cap=cap) for p in args.sweep] or SWEEP,
            seeds=QUICK_SEEDS if args.quick else SEEDS,
            budgets=args.budgets or (QUICK_BUDGETS if args.quick else BUDGETS),
        )
        SWEEP_JSON.write_text(json.dumps(found, indent=1, default=str) + "\n")
        print(format_sweep(found))
        print(f"{time.perf_counter() - start:.0f} s")
        return
    result: dict[str, Any] = {}
    run(out=result, budgets=args.budgets)
    RESULT_JSON.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(format_table(result))
    print("targets met:", result["cold_start_targets_met"])
    print(f"{result['cold_start']['seconds']:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
