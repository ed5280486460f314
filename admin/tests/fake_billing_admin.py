"""A stand-in for billing's internal API as the admin uses it (docs/contracts.md, iss=admin),
answering from in-memory payments. Refunds follow the contract: Idempotency-Key replays the first
answer (another body with the same key -> 422 idempotency_key_reused), more than what is left
-> 409 refund_exceeds_remaining. A subscription's retry-renewal and end answer it, replayed per
Idempotency-Key (409 no_renewal_to_retry / subscription_ended as billing). Every request is recorded with its verified token claims."""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import jwt

_USER_LIST = re.compile(r"^/internal/v1/users/([0-9a-f-]{36})/(payments|subscriptions|refunds)$")
_PAYMENT = re.compile(r"^/internal/v1/payments/([0-9a-f-]{36})$")
_REFUNDS = re.compile(r"^/internal/v1/payments/([0-9a-f-]{36})/refunds$")
_REDEMPTIONS = re.compile(r"^/internal/v1/promo-codes/([0-9a-f-]{36})/redemptions(\?.*)?$")


_TIMELINE = re.compile(r"^/internal/v1/users/([0-9a-f-]{36})/timeline$")
_EXPORT = re.compile(r"^/internal/v1/reports/(payments|refunds)\.csv$")
_SUBSCRIPTION_ACTION = re.compile(
    r"^/internal/v1/subscriptions/([0-9a-f-]{36})/(retry-renewal|end)$"
)


class FakeBilling:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.payments: dict[str, dict] = {}
        self.subscriptions: list[dict] = []
        self.refunds: list[dict] = []
        # promo code id -> {"times_redeemed", "max_redemptions", "items"} (billing's listing)
        self.redemptions: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.fail_posts = False  # answer every POST with 503, as a billing in trouble would
        # Canned answers of the report endpoints (the figures are billing's, tested there).
        self.summary: dict | None = None
        self.search_matches: dict[str, list[dict]] = {}
        self.timelines: dict[str, list[dict]] = {}
        # CSV export: the header, then this many generated rows, sent in chunks as billing does.
        self.export_rows = 0
        self._answers: dict[str | tuple[str, str], tuple[dict | None, int, dict]] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                fake._serve(self)

            def do_POST(self) -> None:
                fake._serve(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_payment(self, user_id: str, *, amount=999, currency="usd", status="succeeded") -> dict:
        payment = {
            "id": str(uuid.uuid4()),
            "user_id": user_id,
            "subscription_id": str(uuid.uuid4()),
            "plan_id": "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
            "status": status,
            "amount": amount,
            "currency": currency,
            "refunded_amount": 0,
            "payment_url": None,
            "failure_code": None,
            "failure_message": None,
            "created_at": "2026-11-20T10:00:00+00:00",
            "updated_at": "2026-11-20T10:01:00+00:00",
            "refunds": [],
        }
        self.payments[payment["id"]] = payment
        self.subscriptions.append(
            {
                "id": payment["subscription_id"],
                "user_id": user_id,
                "plan_id": payment["plan_id"],
                "status": "active",
                "current_period_start": "2026-11-20T10:01:00+00:00",
                "current_period_end": "2026-12-20T10:01:00+00:00",
                "auto_renew": True,
                "grace_until": None,
                "created_at": "2026-11-20T10:00:00+00:00",
                "past_due_since": None,
                "last_decline_code": None,
                "last_decline_message": None,
                "renewal": {
                    "next_renewal_at": "2026-12-20T10:01:00+00:00",
                    "payment_id": None,
                    "payment_status": None,
                    "attempts": 0,
                    "next_retry_at": None,
                },
            }
        )
        return payment

    # -- HTTP -----------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        if _EXPORT.match(urlsplit(handler.path).path):
            return self._export(handler)
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        claims = self._claims(handler.headers.get("Authorization", ""))
        key = handler.headers.get("Idempotency-Key", "")
        with self._lock:
            self.requests.append(
                {
                    "method": handler.command,
                    "path": handler.path,
                    "body": body,
                    "claims": claims,
                    "idempotency_key": key,
                }
            )
            if claims is None:
                status, answer = 401, {"code": "token_invalid", "message": "Bad service token."}
            else:
                status, answer = self._answer(handler.command, handler.path, body, key)
        payload = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _claims(self, authorization: str) -> dict | None:
        scheme, _, token = authorization.partition(" ")
        try:
            return jwt.decode(
                token, self.secret, algorithms=["HS256"], audience="billing", issuer="admin"
            )
        except jwt.PyJWTError:
            return None

    def _export(self, handler: BaseHTTPRequestHandler) -> None:
        """A CSV answer written a batch of rows at a time (never built whole)."""
        claims = self._claims(handler.headers.get("Authorization", ""))
        parts = urlsplit(handler.path)
        with self._lock:
            self.requests.append(
                {
                    "method": "GET",
                    "path": parts.path,
                    "query": dict(parse_qsl(parts.query)),
                    "body": None,
                    "claims": claims,
                    "idempotency_key": "",
                }
            )
        if claims is None:
            handler.send_response(401)
            handler.end_headers()
            return
        if dict(parse_qsl(parts.query)).get("status") == "bogus":
            payload = b'{"code": "validation_error", "message": "status must be one of ..."}'
            handler.send_response(422)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/csv; charset=utf-8")
        handler.end_headers()  # HTTP/1.0: the body ends when the connection closes

        def chunk(data: bytes) -> None:
            handler.wfile.write(data)
            handler.wfile.flush()

        chunk(b"payment_id,amount,currency\r\n")
        batch = []
        for i in range(self.export_rows):
            batch.append(f"{uuid.UUID(int=i)},9.99,usd\r\n")
            if len(batch) == 1000:
                chunk("".join(batch).encode())
                batch = []
        if batch:
            chunk("".join(batch).encode())

    def _answer(self, method: str, path: str, body, key: str) -> tuple[int, dict]:
        parts = urlsplit(path)
        query = dict(parse_qsl(parts.query))
        if method == "GET" and parts.path == "/internal/v1/reports/summary":
            return 200, self.summary or {"currencies": [], "series": [], "totals": [],
                                         "as_of": "2026-11-29T00:00:00+00:00"}  # fmt: skip
        if method == "GET" and parts.path == "/internal/v1/reports/recent-payments":
            items = sorted(self.payments.values(), key=lambda p: p["created_at"], reverse=True)
            if query.get("failed") == "true":
                items = [p for p in items if p["status"] in ("failed", "expired", "canceled")]
            return 200, {"items": items[: int(query.get("limit", 20))]}
        if method == "GET" and parts.path == "/internal/v1/customers/search":
            q = query.get("q", "").strip()
            matches = self.search_matches.get(q)
            if matches is None:
                matches = [
                    {"user_id": p["user_id"], "via": "payment_id", "payment_id": p["id"]}
                    for p in self.payments.values()
                    if q == p["id"]
                ]
            return 200, {"query": q, "matches": matches}
        if method == "GET" and (match := _TIMELINE.match(parts.path)):
            return 200, {"user_id": match.group(1), "items": self.timelines.get(match.group(1), [])}
        if method == "GET" and (match := _USER_LIST.match(path)):
            user_id, kind = match.groups()
            source = {
                "payments": list(self.payments.values()),
                "subscriptions": self.subscriptions,
                "refunds": self.refunds,
            }[kind]
            items = [item for item in source if self._owner(item) == user_id]
            return 200, {"items": items, "total": len(items)}
        if method == "GET" and (match := _PAYMENT.match(path)):
            payment = self.payments.get(match.group(1))
            if payment is None:
                return 404, {"code": "payment_not_found", "message": "Payment not found."}
            return 200, payment
        if method == "GET" and (match := _REDEMPTIONS.match(path)):
            listing = self.redemptions.get(match.group(1))
            if listing is None:
                return 404, {"code": "promo_code_not_found", "message": "No such promo code."}
            items = listing["items"]
            return 200, {"promo_code_id": match.group(1), **listing, "total": len(items)}
        if method == "POST" and self.fail_posts:
            return 503, {"code": "gateway_unavailable", "message": "Payment gateway unavailable."}
        if method == "POST" and (match := _REFUNDS.match(path)):
            return self._refund(match.group(1), body, key)
        if method == "POST" and (match := _SUBSCRIPTION_ACTION.match(path)):
            return self._subscription_action(*match.groups(), key)
        return 404, {"code": "not_found", "message": path}

    def _owner(self, item: dict) -> str:
        if "user_id" in item:
            return item["user_id"]
        return self.payments[item["payment_id"]]["user_id"]

    def _refund(self, payment_id: str, body: dict, key: str) -> tuple[int, dict]:
        if key in self._answers:
            first_body, status, answer = self._answers[key]
            if first_body != {"payment_id": payment_id, **body}:
                return 422, {
                    "code": "idempotency_key_reused",
                    "message": "This Idempotency-Key was used for another request.",
                }
            return status, answer
        payment = self.payments.get(payment_id)
        if payment is None:
            return 404, {"code": "payment_not_found", "message": "Payment not found."}
        left = payment["amount"] - payment["refunded_amount"]
        if body["amount"] > left:
            status, answer = (
                409,
                {
                    "code": "refund_exceeds_remaining",
                    "message": f"Only {left} can still be refunded.",
                },
            )
        else:
            refund = {
                "id": str(uuid.uuid4()),
                "payment_id": payment_id,
                "amount": body["amount"],
                "currency": payment["currency"],
                "status": "pending",
                "reason": body["reason"],
                "created_at": "2026-11-21T09:00:00+00:00",
            }
            payment["refunded_amount"] += body["amount"]
            payment["status"] = "partially_refunded" if body["amount"] < left else "refunded"
            self.refunds.append(refund)
            status, answer = 201, refund
        if key:
            self._answers[key] = ({"payment_id": payment_id, **body}, status, answer)
        return status, answer

    def _subscription_action(self, subscription_id: str, action: str, key: str) -> tuple[int, dict]:
        if (action, key) in self._answers:
            return self._answers[(action, key)][1:]
        found = [s for s in self.subscriptions if s["id"] == subscription_id]
        if not found:
            return 404, {"code": "subscription_not_found", "message": "No such subscription."}
        subscription = found[0]
        renewal = subscription["renewal"]
        if action == "retry-renewal" and (
            subscription["status"] not in ("active", "past_due") or not renewal["payment_id"]
        ):
            status, answer = (
                409,
                {
                    "code": "no_renewal_to_retry",
                    "message": "This subscription has no renewal waiting for payment.",
                },
            )
        elif action == "end" and subscription["status"] in ("expired", "refunded"):
            status, answer = (
                409,
                {
                    "code": "subscription_ended",
                    "message": "This subscription has already ended.",
                },
            )
        else:
            if action == "retry-renewal":
                renewal["next_retry_at"] = "2026-11-29T12:00:00+00:00"
            else:
                subscription.update(status="expired", ended_at="2026-11-29T12:00:00+00:00")
                renewal.update(next_renewal_at=None, next_retry_at=None)
            status, answer = 200, json.loads(json.dumps(subscription))
        if key:
            self._answers[(action, key)] = (None, status, answer)
        return status, answer
