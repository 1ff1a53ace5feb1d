"""Which fixed audio features should the linear probe offer? (issue 19, sound.)

On the real spoken-digit clips of the suite sets, as the service extracts them
(``suite_tensors``: mp4 -> ``iter_clip_media`` -> ``build_clip_tensors``, log-mel
``(64, 151)`` at 10 ms), a logistic regression on each feature set at ``BUDGETS`` labelled
clips drawn at random from the pool (``SEEDS`` seeds), scored on the held-out speaker:

* ``stats``: ``probe.fixed_audio_features(layout="stats")``, band mean/std/min/max of the
  per-clip standardised log-mel (256);
* ``bins``: ``layout="bins"``, 16 time bins + band mean/std (1152);
* ``effnet_<rendering>``: the ImageNet EfficientNet-Lite0 embedding (1280) of the log-mel
  drawn as a 128x128 image (:func:`render_logmel`): ``gray`` (the standardised log-mel,
  clipped to +-3, in all three channels) or ``viridis`` (the same through the viridis colour
  map); low frequencies at the bottom, time left to right;
* ``stats+effnet_<rendering>``: both concatenated (each feature standardised, as the probe
  standardises a modality and appends branch embeddings to it);
* ``stats+effnet_<rendering>/bal``: the same with each block's total variance equal
  (:func:`balance_weights`: the embedding's features scaled by sqrt(256 / 1280)).

The regression is ``suite_models``' linear reference: a multinomial model over the group's
tags plus "none" where some labelled clip has no speech (the service's implicit none outcome),
C from ``C_GRID`` by the lowest inner 3-fold log loss (``choose_c``). Metrics: accuracy of the
digit over the test clips with speech (a "none" argmax counts wrong); on AV-CIFAR (30% of
clips are noise alone) also the speech-present AUC of ``1 - P(none)``.

Cost: CPU time per clip (``time.process_time``, one torch thread, as a worker runs) of the
fixed features and of rendering + embedding, one clip at a time and in batches of 64.

Inputs: the suite caches ``suite_<set>_s0.pt`` (this checkout's ``benchmarks/work`` first,
then ``--cache-dir``; built here when neither has it). Embeddings are cached under
``benchmarks/work/audio_features``. Writes ``benchmarks/audio_features.json`` and ``.md``.

    python -m tests.benchmarks.bench_audio_features [--cache-dir /work/main/benchmarks/work]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tests.benchmarks.common import REPO, WORK
from tests.benchmarks.suite_models import C_GRID, _fit_lr, _proba, choose_c
from tests.benchmarks.suite_tensors import build_suite_tensors

SETS = {"av_cifar": "number", "av_digits_alt": "digit"}
BUDGETS = (80, 200, 640)
SEEDS = (0, 1, 2)
IMAGE_SIDE = 128
Z_CLIP = 3.0
RENDERINGS = ("gray", "viridis")
OUT_JSON = REPO / "benchmarks" / "audio_features.json"
OUT_MD = REPO / "benchmarks" / "audio_features.md"
EMBED_DIR = WORK / "audio_features"


# ---------------------------------------------------------------- data


def locate_cache(name: str, *, cache_dir: Path | None) -> Path:
    """The suite cache of ``name`` (seed 0): this checkout's, else ``cache_dir``'s (read only,
    same file name = same extraction key in this checkout), else built here."""
    file_name = f"suite_{name}_s0.pt"
    for folder in (WORK, cache_dir):
        if folder is not None and (folder / file_name).exists():
            return folder / file_name
    return build_suite_tensors(name, seed=0)


def load_audio_set(name: str, *, cache_dir: Path | None) -> dict[str, Any]:
    """logmel ``(N, 64, S)`` float16, audio_mask/speech/is_test ``(N,)`` bool, digit ``(N,)``
    int (the group's tag index; the group size when the clip names none: no speech)."""
    from tagloop.vocabulary import TagVocabulary

    path = locate_cache(name, cache_dir=cache_dir)
    payload = torch.load(path, weights_only=True, mmap=True)
    vocab = TagVocabulary.from_json(payload["vocab"])
    columns = vocab.group_indices[SETS[name]]
    chosen = payload["targets"].numpy()[:, columns] > 0.5
    digit = np.where(chosen.any(axis=1), chosen.argmax(axis=1), columns.size)
    stat = path.stat()
    return {
        "path": str(path),
        "key": hashlib.sha1(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[
            :10
        ],
        "logmel": payload["logmel"].clone(),
        "audio_mask": payload["audio_mask"].numpy().copy(),
        "speech": payload["speech"].numpy().copy(),
        "is_test": payload["is_test"].numpy().copy(),
        "digit": digit,
        "classes": columns.size,
    }


# ---------------------------------------------------------------- features


def logmel_features(logmel: torch.Tensor, audio_mask: np.ndarray, *, layout: str) -> np.ndarray:
    """The probe's fixed audio features, ``(N, 256)`` stats or ``(N, 1152)`` bins."""
    from tagloop.fusion.config import FusionConfig
    from tagloop.fusion.probe import fixed_audio_features

    floor = FusionConfig().audio_std_floor
    return fixed_audio_features(
        logmel, torch.from_numpy(audio_mask), std_floor=floor, layout=layout
    ).numpy()


def _viridis_table() -> torch.Tensor:
    from matplotlib import colormaps

    return torch.tensor(
        colormaps["viridis"](np.linspace(0.0, 1.0, 256))[:, :3], dtype=torch.float32
    )


def render_logmel(logmel: torch.Tensor, *, rendering: str) -> torch.Tensor:
    """``(B, M, S)`` log-mel -> ``(B, 3, 128, 128)`` float in [-1, 1], the encoder's input.

    Standardised per clip as the probe's features are (mean and std over the whole log-mel,
    std floored at 1), clipped to +-``Z_CLIP``, flipped so low bands are at the bottom,
    resized bilinearly (antialiased where shrinking: 151 columns to 128)."""
    from tagloop.fusion.config import FusionConfig

    x = logmel.float()
    mean = x.mean(dim=(1, 2), keepdim=True)
    std = x.std(dim=(1, 2), keepdim=True, unbiased=False).clamp_min(FusionConfig().audio_std_floor)
    z = ((x - mean) / std).clamp(-Z_CLIP, Z_CLIP).flip(1)
    image = F.interpolate(
        z[:, None],
        size=(IMAGE_SIDE, IMAGE_SIDE),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )[:, 0]  # (B, 128, 128) in [-Z, Z]
    unit = (image + Z_CLIP) / (2 * Z_CLIP)  # [0, 1]
    if rendering == "gray":
        rgb = unit[:, None].expand(-1, 3, -1, -1)
    elif rendering == "viridis":
        index = (unit * 255).round().long().clamp(0, 255)
        rgb = _viridis_table()[index].permute(0, 3, 1, 2)
    else:
        raise ValueError(f"unknown rendering {rendering!r}")
    return rgb * 2.0 - 1.0


def embed_logmel(
    logmel: torch.Tensor, audio_mask: np.ndarray, *, rendering: str, batch: int = 16
) -> np.ndarray:
    """``(N, M, S)`` -> ``(N, 1280)`` float32 embeddings; zero for clips without audio."""
    from tagloop.features.visual_embedding import visual_encoder

    encoder = visual_encoder()
    out = np.zeros((logmel.shape[0], 1280), np.float32)
    with torch.no_grad():
        for first in range(0, logmel.shape[0], batch):
            chunk = render_logmel(logmel[first : first + batch], rendering=rendering)
            out[first : first + chunk.shape[0]] = encoder.embed(chunk).numpy()
    out[~audio_mask] = 0.0
    return out


def cached_embeddings(
    data: dict[str, Any], name: str, *, rendering: str, rows: np.ndarray, took: dict[str, Any]
) -> np.ndarray:
    """``(N, 1280)`` with the embeddings of ``rows`` (the others zero): only the clips some
    run trains or tests on are embedded (about two thirds of each set), kept on disk."""
    path = EMBED_DIR / f"{name}_{rendering}_{data['key']}.npz"
    out = np.zeros((data["logmel"].shape[0], 1280), np.float32)
    done = np.zeros(out.shape[0], bool)
    if path.exists():
        stored = np.load(path)
        out[stored["rows"]] = stored["vectors"]
        done[stored["rows"]] = True
    todo = np.setdiff1d(rows, np.flatnonzero(done))
    if todo.size:
        began = time.perf_counter()
        index = torch.from_numpy(todo)
        out[todo] = embed_logmel(
            data["logmel"][index], data["audio_mask"][todo], rendering=rendering
        )
        done[todo] = True
        took[f"{name}/{rendering}"] = {"clips": int(todo.size), "s": time.perf_counter() - began}
        print(
            f"  embedded {todo.size} {name} clips ({rendering}): "
            f"{time.perf_counter() - began:.0f} s",
            flush=True,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = np.flatnonzero(done)
        np.savez(path, rows=kept, vectors=out[kept])
    return out


# ---------------------------------------------------------------- evaluation


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def evaluate(
    features: np.ndarray,
    data: dict[str, Any],
    rows: np.ndarray,
    *,
    seed: int,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit on ``rows`` (C by inner CV), score the test clips: digit accuracy over clips with
    speech, and speech-present AUC where some test clip has none. ``weights`` ``(D,)``: each
    standardised feature times its weight (a block's share of the L2 penalty)."""
    from sklearn.preprocessing import StandardScaler

    test = np.flatnonzero(data["is_test"])
    scaler = StandardScaler().fit(features[rows])
    x_train, x_test = scaler.transform(features[rows]), scaler.transform(features[test])
    if weights is not None:
        x_train, x_test = x_train * weights, x_test * weights
    y = data["digit"][rows]
    c = choose_c(x_train, y, seed=seed)
    classes = np.arange(data["classes"] + 1)  # the last: none (no speech)
    p = _proba(_fit_lr(x_train, y, c), x_test, classes)
    speech = data["speech"][test]
    guess = p[:, :-1].argmax(axis=1)
    wins = p[:, :-1].max(axis=1) > p[:, -1]
    correct = (guess == data["digit"][test]) & wins
    out = {"C": c, "accuracy": float(correct[speech].mean())}
    if not speech.all():
        out["speech_auc"] = _auc(1.0 - p[:, -1], speech)
    return out


def balance_weights(first: int, total: int) -> np.ndarray:
    """``(total,)``: 1 on the first ``first`` features, ``sqrt(first / (total - first))`` on
    the rest, so both standardised blocks carry the same total variance: 1280 embedding
    features otherwise outweigh 256 log-mel statistics 5 to 1 under one L2 penalty."""
    return np.r_[np.ones(first), np.full(total - first, np.sqrt(first / (total - first)))]


def draw_rows(pool: np.ndarray, *, budget: int, seed: int) -> np.ndarray:
    """``budget`` pool rows at random; nested across budgets for one seed."""
    return np.random.default_rng(seed).permutation(pool)[:budget]


# ---------------------------------------------------------------- cost


def measure_cost(logmel: torch.Tensor, audio_mask: np.ndarray, *, n: int) -> dict[str, Any]:
    """CPU ms per clip (process time; wall in brackets) with one torch thread."""
    from tagloop.features.visual_embedding import visual_encoder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a media worker's setting
    encoder = visual_encoder()
    clips = logmel[:n]
    out: dict[str, Any] = {"clips": n}

    def timed(label: str, fn: Any, count: int) -> None:
        fn()  # warm up (first-call allocations)
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        out[label] = {
            "cpu_ms_per_clip": 1000 * (time.process_time() - cpu) / count,
            "wall_ms_per_clip": 1000 * (time.perf_counter() - wall) / count,
        }

    def one_by_one(rendering: str) -> None:
        with torch.no_grad():
            for i in range(n):
                encoder.embed(render_logmel(clips[i : i + 1], rendering=rendering))

    def batched(rendering: str) -> None:
        with torch.no_grad():
            encoder.embed(render_logmel(clips, rendering=rendering))

    timed("stats", lambda: logmel_features(clips, audio_mask[:n], layout="stats"), n)
    timed("bins", lambda: logmel_features(clips, audio_mask[:n], layout="bins"), n)
    for rendering in RENDERINGS:
        timed(f"effnet_{rendering}_batch1", lambda r=rendering: one_by_one(r), n)
        timed(f"effnet_{rendering}_batch{n}", lambda r=rendering: batched(r), n)
    torch.set_num_threads(threads)
    return out


# ---------------------------------------------------------------- report


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """mean/std over seeds per set, feature and budget."""
    table: dict[str, Any] = {}
    for run in runs:
        cell = table.setdefault(run["set"], {}).setdefault(run["features"], {})
        cell.setdefault(str(run["budget"]), []).append(run)
    out: dict[str, Any] = {}
    for set_name, by_feature in table.items():
        for feature, by_budget in by_feature.items():
            for budget, cell in by_budget.items():
                entry: dict[str, Any] = {"seeds": len(cell)}
                for metric in ("accuracy", "speech_auc"):
                    values = [r[metric] for r in cell if metric in r]
                    if values:
                        entry[metric] = statistics.fmean(values)
                        entry[f"{metric}_std"] = statistics.pstdev(values)
                entry["C"] = [r["C"] for r in cell]
                out.setdefault(set_name, {}).setdefault(feature, {})[budget] = entry
    return out


def embedded_note(embedded: dict[str, Any]) -> str:
    if not embedded:
        return "embeddings from the disk cache of an earlier run"
    clips = sum(e["clips"] for e in embedded.values())
    seconds = sum(e["s"] for e in embedded.values())
    return f"of which {seconds:.0f} s embedding {clips} log-mel images"


def write_markdown(result: dict[str, Any], path: Path) -> None:
    lines = [
        "# Audio features for the linear probe (issue 19)",
        "",
        f"`{result['command']}`, {result['machine']['updated_at']}, "
        f"{result['runtime_s']:.0f} s ({embedded_note(result['embedded'])}). "
        "Logistic regression (C by inner 3-fold CV), "
        f"{len(SEEDS)} seeds of random labelled clips from the pool, held-out speaker as test. "
        "Accuracy: the digit over test clips with speech (mean ± std over seeds); "
        "AUC: speech present, from 1 - P(none) (AV-CIFAR only).",
        "",
    ]
    budgets = [str(b) for b in result["budgets"]]
    for set_name, by_feature in result["summary"].items():
        has_auc = any("speech_auc" in c for f in by_feature.values() for c in f.values())
        head = [f"acc@{b}" for b in budgets] + ([f"AUC@{b}" for b in budgets] if has_auc else [])
        lines += [f"## {set_name}", "", "| features | dims | " + " | ".join(head) + " |"]
        lines.append("|---" * (len(head) + 2) + "|")
        for feature, cells in by_feature.items():
            row = [f"{cells[b]['accuracy']:.3f} ± {cells[b]['accuracy_std']:.3f}" for b in budgets]
            if has_auc:
                row += [f"{cells[b]['speech_auc']:.3f}" for b in budgets]
            dims = result["dims"][feature]
            lines.append(f"| {feature} | {dims} | " + " | ".join(row) + " |")
        lines.append("")
    cost = result["cost"]
    lines += [
        f"## CPU cost per clip (one torch thread, {cost['clips']} clips)",
        "",
        "| features | CPU ms/clip | wall ms/clip |",
        "|---|---|---|",
    ]
    for label, cell in cost.items():
        if isinstance(cell, dict):
            lines.append(
                f"| {label} | {cell['cpu_ms_per_clip']:.2f} | {cell['wall_ms_per_clip']:.2f} |"
            )
    lines.append("")
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    parser.add_argument("--seeds", type=int, default=len(SEEDS))
    parser.add_argument("--renderings", default=",".join(RENDERINGS))
    parser.add_argument("--cost-clips", type=int, default=32)
    parser.add_argument("--out", type=Path, default=OUT_JSON)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    # One thread: on the shared 2-core box two threads embedded 3.5x slower (wall) than one.
    torch.set_num_threads(1)
    budgets = [int(b) for b in args.budgets.split(",")]
    renderings = args.renderings.split(",")
    runs: list[dict[str, Any]] = []
    dims: dict[str, int] = {}
    sources: dict[str, str] = {}
    cost: dict[str, Any] = {}
    embedded: dict[str, Any] = {}  # embedding time of this run (none when all were on disk)
    for set_name in args.sets.split(","):
        data = load_audio_set(set_name, cache_dir=args.cache_dir)
        sources[set_name] = data["path"]
        print(f"{set_name}: {data['logmel'].shape[0]} clips from {data['path']}", flush=True)
        stats = logmel_features(data["logmel"], data["audio_mask"], layout="stats")
        feature_sets = {
            "stats": stats,
            "bins": logmel_features(data["logmel"], data["audio_mask"], layout="bins"),
        }
        pool = np.flatnonzero(~data["is_test"])
        used = np.unique(
            np.concatenate(
                [np.flatnonzero(data["is_test"])]
                + [draw_rows(pool, budget=max(budgets), seed=s) for s in range(args.seeds)]
            )
        )
        for rendering in renderings:
            emb = cached_embeddings(data, set_name, rendering=rendering, rows=used, took=embedded)
            feature_sets[f"effnet_{rendering}"] = emb
            feature_sets[f"stats+effnet_{rendering}"] = np.concatenate([stats, emb], axis=1)
            feature_sets[f"stats+effnet_{rendering}/bal"] = feature_sets[
                f"stats+effnet_{rendering}"
            ]
        if not cost:
            cost = measure_cost(data["logmel"], data["audio_mask"], n=args.cost_clips)
            print(f"  cost: {json.dumps(cost)}", flush=True)
        for feature, x in feature_sets.items():
            dims[feature] = int(x.shape[1])
            x = x.astype(np.float64)
            weights = balance_weights(stats.shape[1], x.shape[1]) if "/bal" in feature else None
            for budget in budgets:
                for seed in range(args.seeds):
                    t0 = time.perf_counter()
                    rows = draw_rows(pool, budget=budget, seed=seed)
                    scores = evaluate(x, data, rows, seed=seed, weights=weights)
                    runs.append(
                        {"set": set_name, "features": feature, "budget": budget, "seed": seed}
                        | scores
                        | {"fit_s": time.perf_counter() - t0}
                    )
                    print(f"  {feature} {budget} s{seed}: {runs[-1]}", flush=True)
    result = {
        "command": "python -m tests.benchmarks.bench_audio_features"
        + (f" --cache-dir {args.cache_dir}" if args.cache_dir else ""),
        "budgets": budgets,
        "seeds": args.seeds,
        "c_grid": list(C_GRID),
        "sources": sources,
        "dims": dims,
        "summary": summarise(runs),
        "cost": cost,
        "embedded": embedded,
        "runs": runs,
        "runtime_s": time.perf_counter() - began,
        "machine": {
            "cpus": __import__("os").cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.out.with_suffix(".md"))
    return result


if __name__ == "__main__":
    main()
