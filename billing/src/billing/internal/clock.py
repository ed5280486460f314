"""The test clock (billing/clock.py): read it, move it forward. Only on a stack started with
`BILLING_TEST_CLOCK=1`; otherwise, and for a move that is not forward, the answer is 404 — as
if the endpoint did not exist, so production reveals nothing."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from billing.clock import CLOCK, workers_caught_up_to
from billing.errors import ClockBackwards, ClockOff

router = APIRouter(prefix="/internal/v1/clock", tags=["internal: test clock"])


class AdvanceIn(BaseModel):
    """Move by `seconds` (> 0) or to `to` (later than now): exactly one of them."""

    model_config = ConfigDict(extra="forbid")

    seconds: float | None = Field(None, allow_inf_nan=False, le=10 * 365 * 86400)
    to: AwareDatetime | None = None

    @model_validator(mode="after")
    def _one_of(self) -> AdvanceIn:
        if (self.seconds is None) == (self.to is None):
            raise ValueError("give exactly one of seconds and to")
        return self


class ClockOut(BaseModel):
    now: datetime
    offset_seconds: float
    # When the latest finished worker pass began (null before the first): everything due by then
    # has been taken up. A test that moved the clock waits for this to pass the new time.
    workers_caught_up_to: datetime | None


def _movable(request: Request):
    resources = request.app.state.resources
    # Any valid service token (the test harness, the demo); a user token is refused.
    resources.verifier.service(request.headers.get("authorization"))
    if not resources.settings.movable_clock:
        raise ClockOff()
    return resources


@router.get("", response_model=ClockOut, summary="The test clock's time (test stacks only)")
async def read(request: Request) -> ClockOut:
    return await _answer(_movable(request))


@router.post(
    "/advance",
    response_model=ClockOut,
    summary="Move the test clock forward (test stacks only; 404 when off or not forward)",
)
async def advance(body: AdvanceIn, request: Request) -> ClockOut:
    resources = _movable(request)
    seconds = body.seconds if body.seconds is not None else (body.to - CLOCK.now()).total_seconds()
    if seconds <= 0:
        raise ClockBackwards()
    # Nothing to invalidate: access decisions compare the periods held in memory with the clock
    # at each check (billing.access.entitlements).
    await CLOCK.advance(resources.redis, resources.settings.redis_prefix, seconds)
    return await _answer(resources)


async def _answer(resources) -> ClockOut:
    caught_up = await workers_caught_up_to(resources.redis, resources.settings.redis_prefix)
    return ClockOut(
        now=CLOCK.now(), offset_seconds=CLOCK.offset_seconds, workers_caught_up_to=caught_up
    )
