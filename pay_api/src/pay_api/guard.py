"""Bounded bodies and no NUL characters, for every endpoint (before any view runs).

* `MAX_CONTENT_LENGTH` = `PAY_API_MAX_BODY_BYTES`; the webhook gets
  `PAY_API_WEBHOOK_MAX_BODY_BYTES`. Past it: `413 payload_too_large` (errors.py).
* A NUL character in the path, the query string or a JSON string (`\\u0000`) answers
  `422 validation_error`: PostgreSQL cannot store it in text and no field of ours needs it.
  Webhooks are exempt: Stripe's objects may carry any text, and only ids (checked) are read.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from flask import Flask, request

from pay_api.config import Settings
from pay_api.errors import ValidationError

# `\u0000` in JSON text, not preceded by an escaped backslash (`\\u0000` is the text "\u0000").
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)
WEBHOOK_BLUEPRINT = "webhooks"
BATCH_ENDPOINTS = frozenset({"payments_internal.charge_renewals"})


def init_app(app: Flask, settings: Settings) -> None:
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes

    @app.before_request
    def _guard() -> None:
        if request.blueprint == WEBHOOK_BLUEPRINT:
            request.max_content_length = settings.webhook_max_body_bytes
            return
        if request.endpoint in BATCH_ENDPOINTS:
            request.max_content_length = settings.batch_max_body_bytes
        if "\x00" in request.path or b"\x00" in unquote_to_bytes(request.query_string):
            raise ValidationError("NUL characters are not allowed.")
        body = request.get_data(cache=True)  # 413 past MAX_CONTENT_LENGTH
        if b"\x00" in body or _JSON_NUL.search(body):
            raise ValidationError("NUL characters are not allowed.")
