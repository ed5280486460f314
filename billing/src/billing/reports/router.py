"""Read-only report endpoints for the admin (iss=admin): nothing here writes."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from billing.auth import require_service
from billing.db import SessionDep, utcnow
from billing.errors import Unprocessable
from billing.payments import service as payments
from billing.payments.schemas import AdminPaymentOut
from billing.reports import export, figures, recent, search, timeline
from billing.reports.schemas import CustomerSearch, Granularity, Summary, Timeline

router = APIRouter(
    prefix="/internal/v1",
    tags=["internal: reports (admin)"],
    dependencies=[Depends(require_service("admin"))],
)

Currency = Annotated[str | None, Query(pattern="^[a-z]{3}$")]


@router.get("/reports/summary", response_model=Summary, summary="The dashboard's figures")
async def summary(
    session: SessionDep,
    date_from: date,
    date_to: date,
    granularity: Granularity = "day",
) -> Summary:
    return await figures.summary(
        session=session,
        date_from=date_from,
        date_to=date_to,
        granularity=granularity,
        now=utcnow(),
    )


def export_filter(
    date_from: date | None = None,
    date_to: date | None = None,
    status: str | None = None,
    currency: Currency = None,
    plan_id: uuid.UUID | None = None,
) -> export.ExportFilter:
    """The query parameters both exports take (dates UTC, inclusive)."""
    return export.ExportFilter(
        date_from=date_from, date_to=date_to, status=status, currency=currency, plan_id=plan_id
    )


FilterDep = Annotated[export.ExportFilter, Depends(export_filter)]


def _add_csv_export(name: str, export_kind: export.Export) -> None:
    """GET /reports/<name>.csv: one export's rows, oldest first, streamed as they are read."""

    @router.get(
        f"/reports/{name}.csv",
        name=f"{name}_csv",
        summary=f"{name.capitalize()} as CSV, oldest first (streamed)",
        response_class=StreamingResponse,
    )
    async def csv_export(request: Request, filters: FilterDep) -> StreamingResponse:
        body = export.stream_csv(
            sessionmaker=request.app.state.resources.sessionmaker,
            export=export_kind,
            filters=export.check_filter(filters, statuses=export_kind.statuses),
        )
        return StreamingResponse(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )


_add_csv_export("payments", export.PAYMENTS)
_add_csv_export("refunds", export.REFUNDS)


class RecentPayments(BaseModel):
    items: list[AdminPaymentOut]


@router.get(
    "/reports/recent-payments",
    response_model=RecentPayments,
    summary="The newest payments of every customer (failed=true: only failed ones)",
)
async def recent_payments(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    failed: bool = False,
) -> RecentPayments:
    rows = await recent.recent_payments(session=session, limit=limit, failed=failed)
    return RecentPayments(items=await payments.present(session=session, payments=rows, admin=True))


@router.get("/customers/search", response_model=CustomerSearch, summary="Find a customer")
async def customer_search(
    request: Request, session: SessionDep, q: Annotated[str, Query(max_length=255)]
) -> CustomerSearch:
    if not q.strip():
        raise Unprocessable("Type a user, payment, refund or Stripe id.")
    matches = await search.find_customers(
        session=session, pay_api=request.app.state.resources.pay_api, query=q
    )
    return CustomerSearch(query=q.strip(), matches=matches)


@router.get("/users/{user_id}/timeline", response_model=Timeline, summary="A customer's timeline")
async def user_timeline(user_id: uuid.UUID, session: SessionDep) -> Timeline:
    return Timeline(
        user_id=user_id, items=await timeline.timeline(session=session, user_id=user_id)
    )
