from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class Access(BaseModel):
    allowed: bool
    reason: Literal["subscription", "grace", "free", "no_subscription", "film_unavailable"]
    until: datetime | None
    film_id: uuid.UUID
    user_id: uuid.UUID


MAX_BATCH_FILMS = 100


class AccessBatchRequest(BaseModel):
    user_id: uuid.UUID
    film_ids: list[uuid.UUID] = Field(max_length=MAX_BATCH_FILMS)


class AccessBatch(BaseModel):
    """One Access answer per asked film, in the order asked (the single check's decisions)."""

    user_id: uuid.UUID
    access: list[Access]
