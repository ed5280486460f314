"""A stand-in for billing's internal catalog API (docs/contracts.md), recording every request.

It implements the contract's upsert semantics (same body twice -> changed=false; DELETE
deactivates, 404 for an unknown id) and checks the service token (HS256, iss=etl, aud=billing).
Like a strict billing, it refuses a plan naming a film it does not know (films go first), and a
promo code or personal discount naming a plan it does not know (plans go before them).
Tests can make it fail (`fail_status` for every request or only for paths with a prefix), refuse
given ids (422), or go away entirely (`stop()` / `start()` on the same port).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

FILM_FIELDS = {"title": str, "active": bool}
PLAN_FIELDS = {
    "name": str,
    "description": str,
    "price_amount": int,
    "currency": str,
    "period_unit": str,
    "period_count": int,
    "refund_window_days": int,
    "active": bool,
    "all_films": bool,
    "film_ids": list,
}
_DISCOUNT_FIELDS = {
    "percent_off": (int, type(None)),
    "amount_off": (int, type(None)),
    "currency": (str, type(None)),
    "all_plans": bool,
    "active": bool,
    "plan_ids": list,
}
PROMO_CODE_FIELDS = {
    **_DISCOUNT_FIELDS,
    "code": str,
    "duration": str,
    "duration_periods": (int, type(None)),
    "valid_from": (str, type(None)),
    "valid_until": (str, type(None)),
    "max_redemptions": (int, type(None)),
    "max_per_user": (int, type(None)),
    "first_purchase_only": bool,
}
PERSONAL_DISCOUNT_FIELDS = {
    **_DISCOUNT_FIELDS,
    "user_id": str,
    "valid_until": (str, type(None)),
    "note": str,
}
# The service-token secret the tests give both etl and this stand-in.
TEST_SECRET = "etl-test-service-secret-of-32-bytes-or-more"

_PATH = re.compile(r"^/internal/v1/(films|plans|promo-codes|personal-discounts)/([0-9a-f-]{36})$")


@dataclass
class Recorded:
    method: str
    path: str
    body: dict | None
    status: int
    answer: dict
    token_claims: dict | None


@dataclass
class BillingStub:
    secret: str
    films: dict[str, dict] = field(default_factory=dict)
    plans: dict[str, dict] = field(default_factory=dict)
    promo_codes: dict[str, dict] = field(default_factory=dict)
    personal_discounts: dict[str, dict] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    fail_status: int | None = None
    fail_prefix: str = "/"
    rejected_ids: set[str] = field(default_factory=set)
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BillingStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_PUT(self) -> None:
                stub._handle(self)

            def do_DELETE(self) -> None:
                stub._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Go away: connections are refused until start() binds the same port again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- what tests look at ---------------------------------------------------------------------
    def calls(self, method: str | None = None) -> list[tuple[str, str]]:
        return [
            (r.method, r.path)
            for r in self.requests
            if r.status < 500 and (method is None or r.method == method)
        ]

    def answered(self) -> list[Recorded]:
        return [r for r in self.requests if r.status == 200]

    # -- the contract -------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        claims = self._claims(handler.headers.get("Authorization", ""))
        with self._lock:
            status, answer = self._answer(handler.command, handler.path, body, claims)
            self.requests.append(
                Recorded(handler.command, handler.path, body, status, answer, claims)
            )
        payload = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _claims(self, authorization: str) -> dict | None:
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer":
            return None
        try:
            return jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                audience="billing",
                issuer="etl",
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.PyJWTError:
            return None

    def _answer(self, method, path, body, claims) -> tuple[int, dict]:
        if self.fail_status and path.startswith(self.fail_prefix):
            return self.fail_status, {"code": "unavailable", "message": "injected failure"}
        if claims is None:
            return 401, {"code": "token_invalid", "message": "bad service token"}
        match = _PATH.match(path)
        if not match:
            return 404, {"code": "not_found", "message": path}
        kind, object_id = match.groups()
        if object_id in self.rejected_ids:
            return 422, {"code": "validation_error", "message": f"{kind[:-1]} refused by test"}
        table, fields = {
            "films": (self.films, FILM_FIELDS),
            "plans": (self.plans, PLAN_FIELDS),
            "promo-codes": (self.promo_codes, PROMO_CODE_FIELDS),
            "personal-discounts": (self.personal_discounts, PERSONAL_DISCOUNT_FIELDS),
        }[kind]
        if method == "DELETE":
            if object_id not in table:
                return 404, {"code": f"{kind[:-1]}_not_found", "message": "unknown id"}
            changed = table[object_id]["active"]
            table[object_id] = {**table[object_id], "active": False}
            return 200, {"id": object_id, "changed": changed}
        if not isinstance(body, dict) or set(body) != set(fields):
            return 422, {"code": "validation_error", "message": f"fields must be {sorted(fields)}"}
        wrong = [name for name, kind_ in fields.items() if not isinstance(body[name], kind_)]
        if wrong:
            return 422, {"code": "validation_error", "message": f"bad types: {wrong}"}
        if kind == "plans":
            unknown = [film_id for film_id in body["film_ids"] if film_id not in self.films]
            if unknown:
                return 422, {"code": "film_not_found", "message": f"unknown films {unknown}"}
        if kind in ("promo-codes", "personal-discounts"):
            unknown = [plan_id for plan_id in body["plan_ids"] if plan_id not in self.plans]
            if unknown:
                return 422, {"code": "plan_not_found", "message": f"unknown plans {unknown}"}
        changed = table.get(object_id) != body
        table[object_id] = body
        return 200, {"id": object_id, "changed": changed}
