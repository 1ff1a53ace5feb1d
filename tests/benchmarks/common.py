"""Helpers shared by the benchmarks: the results file and child-process measurement."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results.json"
WORK = REPO / "benchmarks" / "work"


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (what results.json records),
    else as given: a one-off run may write its files anywhere."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def load_results() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save_results(update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into results.json, so each benchmark can be rerun on its own."""
    results = load_results()
    results.update(update)
    results["machine"] = {
        "cpus": __import__("os").cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def run_child(module: str, *args: str) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh process; it prints one JSON line last."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {args} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB


def finish_accuracy_plot(
    fig: Any,
    ax: Any,
    path: Path,
    *,
    title: str,
    log_budgets: list[int] | None = None,
    ylabel: str = "test accuracy (mean ± std over seeds)",
    chance: float | None = 0.1,
) -> Path:
    """The shared ending of the score-against-labels plots: the chance line (default: ten
    digits; None draws none), an optional log x-axis ticked at the budgets, labels, legend,
    and the PNG at ``path``."""
    import matplotlib.pyplot as plt

    if chance is not None:
        ax.axhline(chance, color="grey", linewidth=0.8, linestyle=":", label="chance")
    if log_budgets:
        ax.set_xscale("log")
        ax.set_xticks(log_budgets)
        ax.set_xticklabels([str(b) for b in log_budgets])
        ax.minorticks_off()
    ax.set_xlabel("labels")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
