"""The shape a signed body must have to be read as a Stripe event (anything else: 400)."""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, ConfigDict, StringConstraints

from pay_api.gateway import InvalidEvent

# Stripe's ids: a prefix, an underscore, letters and digits (our columns hold 255).
StripeId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^\w+$")]
EventType = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[\w.]+$")]


class _Object(BaseModel):
    """The event's `data.object`: only its id and the intent it names are read — the rest is
    fetched from Stripe (an event is a hint, see webhooks/service.py)."""

    model_config = ConfigDict(extra="ignore")

    id: StripeId
    payment_intent: StripeId | None = None

    @pydantic.field_validator("payment_intent", mode="before")
    @classmethod
    def _expanded(cls, value: Any) -> Any:
        return value.get("id") if isinstance(value, dict) else value


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore")

    object: _Object


class StripeEventIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: StripeId
    type: EventType
    data: _Data


def read_event(body: Any) -> StripeEventIn:
    """The event, or 400 invalid_event for a body that is JSON but not an event object."""
    if not isinstance(body, dict):
        raise InvalidEvent()
    try:
        return StripeEventIn.model_validate(body)
    except pydantic.ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors(include_input=False)
        ]
        raise InvalidEvent(details=details) from exc
