"""Who the caller is: the token's name and role, so a client can show them and hide what the
role may not do (the UI's sidebar and its admin-only controls)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from services.api.deps import CallerDep

router = APIRouter(prefix="/api/v1", tags=["me"])


class MeOut(BaseModel):
    name: str
    role: str


@router.get("/me", response_model=MeOut)
async def get_me(caller: CallerDep) -> MeOut:
    return MeOut(name=caller.name, role=caller.role)
