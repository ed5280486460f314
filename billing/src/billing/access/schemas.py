from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class Access(BaseModel):
    allowed: bool
    reason: Literal["subscription", "grace", "free", "no_subscription", "film_unavailable"]
    until: datetime | None
    film_id: uuid.UUID
    user_id: uuid.UUID
