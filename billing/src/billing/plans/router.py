from __future__ import annotations

from fastapi import APIRouter

from billing.auth import CurrentUser
from billing.db import SessionDep
from billing.plans import service
from billing.plans.schemas import PlanList

router = APIRouter(prefix="/api/v1/plans", tags=["plans"])


@router.get("", response_model=PlanList, summary="Plans on sale")
async def list_plans(_user: CurrentUser, session: SessionDep) -> PlanList:
    plans = await service.list_active(session=session)
    return PlanList(items=[service.present(p) for p in plans], total=len(plans))
