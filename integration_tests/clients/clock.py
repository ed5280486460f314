"""billing's test clock (`BILLING_TEST_CLOCK=1`, on in every stack `scripts/stack.sh` starts): read
it and move it forward through `/internal/v1/clock`, as the demo and the tests do instead of
sleeping. Moving it moves the whole stack (every billing process reads the offset)."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx

from .stack import StackSettings, exchange_hooks
from .tokens import service_token


class ClockUnanswered(AssertionError):
    """billing did not answer the clock's request with 200 (stopped, say, or the clock off)."""


class StackClock:
    def __init__(self, settings: StackSettings, on_exchange=None) -> None:
        self.settings = settings
        self.http = httpx.Client(
            base_url=settings.billing_url, timeout=15, event_hooks=exchange_hooks(on_exchange)
        )

    def _headers(self) -> dict[str, str]:
        # a fresh short-lived token each call: a test may hold the clock longer than one lives
        return {"Authorization": f"Bearer {service_token(self.settings, 'demo')}"}

    def now(self) -> datetime:
        return datetime.fromisoformat(self._read()["now"])

    def workers_caught_up_to(self) -> datetime | None:
        """When the latest finished pass of billing's workers began (the clock's time): all that
        was due by then has been taken up. None before the first pass."""
        value = self._read()["workers_caught_up_to"]
        return None if value is None else datetime.fromisoformat(value)

    def _read(self) -> dict:
        answer = self.http.get("/internal/v1/clock", headers=self._headers())
        if answer.status_code != 200:
            raise ClockUnanswered(f"the clock answered {answer.status_code}: {answer.text}")
        return answer.json()

    def move_to(self, moment: datetime) -> datetime:
        """Forward to `moment` (nothing when it is not ahead); the clock's time after."""
        if moment <= self.now():
            return self.now()
        return self._advance({"to": moment.isoformat()})

    def move_by(self, delta: timedelta) -> datetime:
        return self._advance({"seconds": delta.total_seconds()})

    def _advance(self, body: dict) -> datetime:
        answer = self.http.post("/internal/v1/clock/advance", json=body, headers=self._headers())
        if answer.status_code != 200:
            raise ClockUnanswered(f"the clock answered {answer.status_code}: {answer.text}")
        return datetime.fromisoformat(answer.json()["now"])
