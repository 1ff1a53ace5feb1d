"""`tagloop demo`: the whole loop, headless, on the embedded default.

Builds AV-digit clips, ingests them over REST into real Celery workers, marks the demo's test
clips as the holdout (labeled through their own queue, never trained on), then runs rounds of
active learning: an oracle client takes clips from the labeling queue (seed round first),
answers from the demo labels, and the loop trains, promotes (guarded), rescores and refills.
Each round prints the served model's accuracy on the holdout; the learning curve is written
as CSV and PNG, beside random selection on the same clips (``tagloop.demo_baseline``).
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagloop.client import TagloopClient
from tagloop.errors import TagloopError

Echo = Callable[[str], Any]


def build_demo_set(out_dir: Path, *, n: int, seed: int) -> Path:
    """Write ``n`` demo clips (mp4) and their labels; reuse them when already there."""
    from tagloop.datasets.av_digits import build_demo_samples, write_av_dataset

    labels = out_dir / "labels.csv"
    if labels.exists() and sum(1 for _ in labels.open()) - 1 == n:
        return labels
    return write_av_dataset(build_demo_samples(n=n, seed=seed), out_dir, workers=2)


def read_labels(labels: Path) -> list[dict[str, str]]:
    with labels.open() as f:
        return list(csv.DictReader(f))


@dataclass
class DemoPool:
    truth: dict[int, str]  # clip id -> digit
    test_clips: list[int]  # held out: never labeled, used to measure each promoted model


def ingest_demo_set(
    client: TagloopClient, labels: Path, *, timeout_s: float, echo: Echo
) -> tuple[dict[str, Any], DemoPool]:
    rows = read_labels(labels)
    started = time.monotonic()
    uploaded = [client.upload_video(labels.parent / row["file"]) for row in rows]
    n_dup = sum(1 for v in uploaded if v.get("duplicate"))
    echo(f"uploaded {len(uploaded)} videos over REST ({n_dup} already known)")
    last = [-1]

    def progress(done: int, total: int) -> None:
        if done != last[0] and (done == total or done - last[0] >= max(1, total // 10)):
            last[0] = done
            echo(f"  processed {done}/{total}")

    videos = client.wait_for_videos(
        [v["id"] for v in uploaded], timeout_s=timeout_s, on_progress=progress
    )
    summary = {
        "videos": len(videos),
        "statuses": dict(Counter(v["status"] for v in videos)),
        "clips": sum(v["n_clips"] for v in videos),
        "seconds": time.monotonic() - started,
        "video_seconds": sum(v["duration_s"] or 0.0 for v in videos),
        "failed": [
            (v["filename"], v["error_code"], v["error_message"])
            for v in videos
            if v["status"] == "failed"
        ],
    }
    truth: dict[int, str] = {}
    test: list[int] = []
    for video, row in zip(videos, rows, strict=True):
        for clip in client.list_clips(video_id=video["id"]):
            truth[clip["id"]] = row["digit"]
            if row["split"] == "test":
                test.append(clip["id"])
    return summary, DemoPool(truth=truth, test_clips=test)


def ensure_digit_tags(client: TagloopClient) -> None:
    existing = {t["name"] for t in client.request("GET", "/api/v1/tags").json()["items"]}
    for d in range(10):
        if str(d) not in existing:
            client.request(
                "POST",
                "/api/v1/tags",
                json={"name": str(d), "group": "digit", "description": f"the digit {d}"},
            )


def label_holdout(client: TagloopClient, pool: DemoPool, *, timeout_s: float) -> int:
    """Mark the demo's test clips as the holdout and label them through its own queue, so
    every model version is measured on the same, unbiased clips."""
    client.request("POST", "/api/v1/holdout", json={"clip_ids": pool.test_clips})
    labeled, deadline = 0, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        resp = client.request("GET", "/api/v1/queue/next", params={"queue": "holdout"})
        if resp.status_code == 204:
            return labeled
        item = resp.json()
        _answer(client, pool, item)
        labeled += 1
    raise TagloopError(f"holdout not labeled within {timeout_s:.0f} s", code="holdout_timeout")


def _answer(client: TagloopClient, pool: DemoPool, item: dict[str, Any]) -> None:
    clip_id = item["clip"]["id"]
    client.request(
        "POST",
        f"/api/v1/clips/{clip_id}/labels",
        json={"tags": [pool.truth[clip_id]], "lease_id": item["lease_id"], "seconds_spent": 0.0},
    )


def label_batch(client: TagloopClient, pool: DemoPool, *, batch: int, timeout_s: float) -> int:
    """The oracle: take clips from the queue and label them until ``batch`` labels are in."""
    labeled, deadline = 0, time.monotonic() + timeout_s
    while labeled < batch and time.monotonic() < deadline:
        resp = client.request("GET", "/api/v1/queue/next")
        if resp.status_code == 204:
            time.sleep(0.5)  # the loop refills an empty queue (seed batch or rescored)
            continue
        _answer(client, pool, resp.json())
        labeled += 1
    return labeled


def _scored_by(client: TagloopClient, version_id: int) -> bool:
    """Whether ``version_id`` has started scoring the pool (it scores by clip id, so the
    first unlabeled clip comes first)."""
    clips = client.request("GET", "/api/v1/clips", params={"labeled": "false", "limit": 1})
    items = clips.json()["items"]
    if not items:
        return True
    pred = client.request("GET", f"/api/v1/clips/{items[0]['id']}").json().get("prediction")
    return bool(pred) and pred["model_version_id"] == version_id


def wait_for_round(client: TagloopClient, *, n_versions: int, timeout_s: float) -> dict[str, Any]:
    """Block until a version newer than the ``n_versions`` known ones is trained, has scored
    the pool if it was promoted, and the queue has a clip to offer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        versions = client.request("GET", "/api/v1/models").json()
        done = [v for v in versions if v["status"] != "training"]
        if len(done) > n_versions:
            newest = max(done, key=lambda v: v["id"])
            if newest["status"] == "failed":
                raise TagloopError(f"training round v{newest['id']} failed", code="round_failed")
            jobs = client.request("GET", "/api/v1/stats").json()["round"]["jobs"]
            busy = any(j["kind"] in ("train", "score") for j in jobs)
            scored = newest["status"] != "promoted" or _scored_by(client, newest["id"])
            offered = scored and not busy
            if offered and client.request("GET", "/api/v1/queue/next").status_code == 200:
                return newest
        time.sleep(0.5)
    raise TagloopError(f"no new model version within {timeout_s:.0f} s", code="round_timeout")


def served_accuracy(client: TagloopClient) -> tuple[float | None, int | None, float | None]:
    """The served (promoted) version's digit accuracy on the holdout, its id, and the cut
    fitted on the holdout at which the Label page pre-checks its likeliest digit."""
    versions = client.request("GET", "/api/v1/models").json()
    promoted = [v for v in versions if v["status"] == "promoted"]
    if not promoted:
        return None, None, None
    holdout = promoted[0]["metrics"].get("holdout") or {}
    digit = (holdout.get("accuracy") or {}).get("digit")
    return digit, promoted[0]["id"], holdout.get("group_threshold")


def run_rounds(
    client: TagloopClient,
    pool: DemoPool,
    *,
    rounds: int,
    batch: int,
    round_timeout_s: float,
    echo: Echo,
) -> list[dict[str, Any]]:
    curve: list[dict[str, Any]] = []
    n_labels = 0
    echo(
        f"{'round':>5} {'labels':>6} {'version':>7} {'status':>9} {'val score':>9} "
        f"{'holdout acc':>11} {'served':>6} {'pre-check at':>12}"
    )
    for r in range(rounds):
        n_versions = len(client.request("GET", "/api/v1/models").json())
        n_labels += label_batch(client, pool, batch=batch, timeout_s=round_timeout_s)
        version = wait_for_round(client, n_versions=n_versions, timeout_s=round_timeout_s)
        acc, served, cut = served_accuracy(client)
        row = {
            "round": r + 1,
            "labels": n_labels,
            "version": version["id"],
            "status": version["status"],
            "val_score": version["metrics"].get("score"),
            "test_accuracy": acc,
            "scored_by": served,
            "group_threshold": cut,
        }
        curve.append(row)
        val = f"{row['val_score']:.3f}" if row["val_score"] is not None else "-"
        test = f"{acc:.3f}" if acc is not None else "-"
        precheck = f"{cut:.2f}" if cut is not None else "-"
        echo(
            f"{r + 1:>5} {n_labels:>6} {'v' + str(version['id']):>7} "
            f"{version['status']:>9} {val:>9} {test:>11} {'v' + str(served):>6} {precheck:>12}"
        )
    return curve


Series = tuple[str, list[int], list[float | None], dict[str, Any]]  # label, xs, ys, style


def plot_accuracy_curves(series: list[Series], path: Path, *, title: str, ylabel: str) -> Path:
    """Accuracy against labels, one line per series (None: a gap), the chance line for ten
    digits, as a PNG: the look both demo plots share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, xs, ys, style in series:
        ax.plot(xs, [float("nan") if y is None else y for y in ys], label=label, **style)
    ax.axhline(0.1, color="grey", linewidth=0.8, linestyle=":", label="chance")
    ax.set_xlabel("labels")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_curve(curve: list[dict[str, Any]], out_dir: Path, *, strategy: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / "demo_learning_curve.csv", out_dir / "demo_learning_curve.png"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
    xs = [int(c["labels"]) for c in curve]
    plot_accuracy_curves(
        [
            ("holdout accuracy", xs, [c["test_accuracy"] for c in curve], {"marker": "o"}),
            (
                "validation score",
                xs,
                [c["val_score"] for c in curve],
                {"marker": "s", "linestyle": "--"},
            ),
        ],
        png_path,
        title=f"tagloop demo: AV digits, the served model, {strategy} selection",
        ylabel="accuracy",
    )
    return csv_path, png_path


def format_ingest_report(summary: dict[str, Any]) -> str:
    lines = [
        f"  videos      {summary['videos']}  {summary['statuses']}",
        f"  clips       {summary['clips']}",
        f"  video time  {summary['video_seconds']:.1f} s processed in "
        f"{summary['seconds']:.1f} s wall",
    ]
    lines += [f"  FAILED {name}: {code}: {message}" for name, code, message in summary["failed"]]
    return "\n".join(lines)
