"""A small typed HTTP client of the v1 REST API, for the CLI, the demo, scripts and the UI."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tagloop.errors import TagloopError


class ApiError(TagloopError):
    """An error answer of the API, carrying its code and HTTP status."""

    def __init__(
        self, status: int, code: str, message: str, *, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}", code=code)
        self.http_status = status
        # The error's other fields (a bulk import's per-row ``errors``, ``n_errors`` ...).
        self.details: dict[str, Any] = details or {}


class TagloopClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 60.0) -> None:
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> TagloopClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        resp = self.http.request(method, path, **kwargs)
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                details = {k: v for k, v in err.items() if k not in ("code", "message")}
                raise ApiError(resp.status_code, err["code"], err["message"], details=details)
            except (ValueError, KeyError, TypeError):
                raise ApiError(resp.status_code, "http_error", resp.text[:200]) from None
        return resp

    def upload_video(self, path: Path) -> dict[str, Any]:
        with path.open("rb") as f:
            resp = self.request(
                "POST", "/api/v1/videos", files={"file": (path.name, f, "video/mp4")}
            )
        return dict(resp.json())

    def import_video(self, path: str) -> dict[str, Any]:
        return dict(self.request("POST", "/api/v1/videos/import", json={"path": path}).json())

    def import_tags(self, path: Path) -> dict[str, Any]:
        """POST a taxonomy file (``.json``, else CSV) to /tags/import: its counts, or an
        ``ApiError`` whose ``details["errors"]`` lists the bad rows (nothing was stored)."""
        fmt = "json" if path.suffix.lower() == ".json" else "csv"
        media = "application/json" if fmt == "json" else "text/csv"
        resp = self.request(
            "POST",
            "/api/v1/tags/import",
            params={"format": fmt},
            content=path.read_bytes(),
            headers={"Content-Type": media},
        )
        return dict(resp.json())

    def get_video(self, video_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/videos/{video_id}").json())

    def iter_pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            query = {k: v for k, v in {**params, "cursor": cursor}.items() if v is not None}
            page = self.request("GET", path, params=query).json()
            yield from page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def list_videos(self, **params: Any) -> list[dict[str, Any]]:
        return list(self.iter_pages("/api/v1/videos", limit=200, **params))

    def list_clips(self, **params: Any) -> list[dict[str, Any]]:
        return list(self.iter_pages("/api/v1/clips", limit=500, **params))

    def get_job(self, job_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/jobs/{job_id}").json())

    def wait_for_videos(
        self,
        video_ids: list[int],
        *,
        timeout_s: float = 600.0,
        poll_s: float = 0.5,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Poll until every video is ready or failed; raises on timeout."""
        pending = set(video_ids)
        done: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while pending:
            for vid in sorted(pending):
                video = self.get_video(vid)
                if video["status"] in ("ready", "failed"):
                    done[vid] = video
            pending -= set(done)
            if on_progress is not None:
                on_progress(len(done), len(video_ids))
            if pending and time.monotonic() > deadline:
                raise TagloopError(
                    f"{len(pending)} videos still not processed after {timeout_s:.0f} s",
                    code="ingest_timeout",
                )
            if pending:
                time.sleep(poll_s)
        return [done[v] for v in video_ids]
