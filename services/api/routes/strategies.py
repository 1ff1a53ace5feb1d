"""The selection strategies a deployment can be set to, and which one ranks its queue now, so
a script or the UI can say why a clip was offered without reading the server's settings."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from services.api.deps import CallerDep, SettingsDep
from tagloop.selection import get_strategy, list_strategies

router = APIRouter(prefix="/api/v1", tags=["strategies"])


class StrategyOut(BaseModel):
    name: str
    description: str
    # Extra inputs it needs beyond the fused probabilities (mc_probs, modality_probs,
    # tag_counts) and how it builds a batch (k_center, cluster_round_robin, or rank: no diversity).
    requires: list[str]
    batch: str
    active: bool


class StrategiesOut(BaseModel):
    active: str
    seed_batch_rule: str
    strategies: list[StrategyOut]


@router.get("/strategies", response_model=StrategiesOut)
async def get_strategies(caller: CallerDep, settings: SettingsDep) -> StrategiesOut:
    del caller  # any signed-in role may read it
    rows = []
    for name in list_strategies():
        spec = get_strategy(name)
        rows.append(
            StrategyOut(
                name=name,
                description=spec.description,
                requires=sorted(spec.requires),
                batch=spec.batch,
                active=name == settings.selection_strategy,
            )
        )
    return StrategiesOut(
        active=settings.selection_strategy,
        seed_batch_rule=settings.seed_batch_rule,
        strategies=rows,
    )
