"""`tagloop demo`: build AV-digit clips, ingest them over REST, wait for the workers, report.

Everything goes through the public path a user would take: real mp4 files, multipart
uploads to the API, real Celery workers on the embedded default (SQLite, SQLAlchemy broker).
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tagloop.client import TagloopClient
from tagloop.config import Settings


def build_demo_set(out_dir: Path, *, n: int, seed: int) -> Path:
    """Write ``n`` demo clips (mp4) and their labels; reuse them when already there."""
    from tagloop.datasets.av_digits import build_demo_samples, write_av_dataset

    labels = out_dir / "labels.csv"
    if labels.exists() and sum(1 for _ in labels.open()) - 1 == n:
        return labels
    return write_av_dataset(build_demo_samples(n=n, seed=seed), out_dir)


def read_labels(labels: Path) -> list[dict[str, str]]:
    with labels.open() as f:
        return list(csv.DictReader(f))


def ingest_demo_set(
    client: TagloopClient, labels: Path, *, timeout_s: float, echo: Any = print
) -> dict[str, Any]:
    rows = read_labels(labels)
    started = time.monotonic()
    uploaded = [client.upload_video(labels.parent / row["file"]) for row in rows]
    n_dup = sum(1 for v in uploaded if v.get("duplicate"))
    echo(f"uploaded {len(uploaded)} videos over REST ({n_dup} already known)")

    last = [-1]

    def progress(done: int, total: int) -> None:
        if done != last[0]:
            last[0] = done
            echo(f"  processed {done}/{total}")

    videos = client.wait_for_videos(
        [v["id"] for v in uploaded], timeout_s=timeout_s, on_progress=progress
    )
    elapsed = time.monotonic() - started
    statuses = Counter(v["status"] for v in videos)
    failed = [v for v in videos if v["status"] == "failed"]
    return {
        "videos": len(videos),
        "statuses": dict(statuses),
        "clips": sum(v["n_clips"] for v in videos),
        "seconds": elapsed,
        "failed": [(v["filename"], v["error_code"], v["error_message"]) for v in failed],
        "video_seconds": sum(v["duration_s"] or 0.0 for v in videos),
    }


def format_report(summary: dict[str, Any], settings: Settings) -> str:
    lines = [
        "",
        "tagloop demo: ingestion through the REST API and Celery workers",
        f"  videos      {summary['videos']}  {summary['statuses']}",
        f"  clips       {summary['clips']}",
        f"  video time  {summary['video_seconds']:.1f} s processed in "
        f"{summary['seconds']:.1f} s wall",
        f"  data dir    {settings.data_dir}",
        f"  database    {settings.database_url}",
    ]
    for name, code, message in summary["failed"]:
        lines.append(f"  FAILED {name}: {code}: {message}")
    return "\n".join(lines)
