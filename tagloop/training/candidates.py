"""The linear candidates a probe round chooses among, by cross-validation over the labels.

Which fixed features serve best depends on the data, not on the team's taste: ImageNet
embeddings see photographs that pixels cannot, pooled pixels keep the layout of a stroke that a
photograph network blurs, and log-mel time bins help where a sound starts with the clip and
only add noise where it starts anywhere. So a round fits each candidate the same way (C by
grouped folds, calibrated: ``probe_fit.fit_head_by_folds``) and serves the one whose pooled
out-of-fold predictions score best. The floor is the plain linear model on fixed clip features
(pooled pixels + log-mel statistics), so the served model cannot fall far below it except by
the noise of the folds' choice.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from tagloop.fusion.config import FusionConfig


def probe_candidates(config: FusionConfig) -> list[tuple[str, FusionConfig]]:
    """``(name, config)`` per candidate, the configured one first (ties go to it).

    With an embedding-reading config: the configured probe, the same probe with timing-blind
    audio statistics, and the floor (pooled pixels + audio statistics). With a pixel config
    (no visual encoder): it and the floor.
    """
    floor = replace(config, probe_visual="pixels", probe_audio="stats")
    out = [("configured", config)]
    if config.probe_visual == "embedding" and config.probe_audio != "stats":
        out.append(("embedding_stats", replace(config, probe_audio="stats")))
    if floor != config:
        out.append(("floor", floor))
    return out


def candidate_key(fit: dict[str, Any]) -> tuple[float, float]:
    """Sort key of a probe fit (``probe_fit.fit_probe``'s record): the central head's
    out-of-fold score, then its calibrated out-of-fold loss (lower is better)."""
    central = (fit.get("heads") or {}).get("central") or {}
    score = central.get("oof_score")
    loss = central.get("oof_loss_calibrated")
    return (
        score if score is not None else -math.inf,
        -loss if loss is not None and math.isfinite(loss) else -math.inf,
    )


def describe_candidate(name: str, config: FusionConfig, fit: dict[str, Any]) -> dict[str, Any]:
    """What the version's record keeps of one candidate (JSON)."""
    central = (fit.get("heads") or {}).get("central") or {}
    return {
        "name": name,
        "visual": config.probe_visual,
        "audio": config.probe_audio,
        "oof_score": central.get("oof_score"),
        "oof_loss": central.get("oof_loss_calibrated"),
        "C": central.get("C"),
        "temperature": central.get("temperature"),
        "chosen_by": central.get("chosen_by"),
    }
