"""Pushes rows into billing's internal API (docs/contracts.md, "billing — internal API", etl):

    PUT    /internal/v1/films/{id}   {title, active}
    PUT    /internal/v1/plans/{id}   {name, description, price_amount, currency, period_unit,
                                      period_count, refund_window_days, active, all_films, film_ids}
    PUT    /internal/v1/promo-codes/{id}, /internal/v1/personal-discounts/{id}  (docs/contracts.md)
    DELETE /internal/v1/{films,plans,promo-codes,personal-discounts}/{id}   (billing deactivates)
    -> 200 {"id", "changed": bool}

Failure policy:
* connection errors, timeouts, 5xx, 429 — billing is (temporarily) unavailable: retried with
  capped exponential back-off, then BillingUnavailable ends the pass without moving the watermark;
* 401/403 (wrong secret, etl not allowed) and 404/405 on an upsert (endpoint missing: billing too
  old) — nothing can succeed until someone fixes the deployment: also BillingUnavailable, so no
  row is skipped and everything flows once it is fixed;
* any other 4xx (400, 409, 422, ...) — billing refuses *this* row: returned as Rejected; the
  caller logs it loudly, remembers it in the state file and goes on with the other rows. The row is
  sent again when it changes in the admin (or with `python -m etl --once --full`);
* 404 on DELETE — billing never knew the object: nothing to deactivate, counted as delivered.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from etl.config import Settings

log = logging.getLogger("etl.load")

_SYSTEMIC_STATUSES = {401, 403, 408, 425, 429}
# Deletion log kinds -> billing's collection.
_COLLECTIONS = {
    "film": "films",
    "plan": "plans",
    "promo_code": "promo-codes",
    "personal_discount": "personal-discounts",
}


class BillingUnavailable(Exception):
    """billing cannot take rows now; nothing after this point was delivered."""


@dataclass(frozen=True)
class Delivered:
    changed: bool


@dataclass(frozen=True)
class Rejected:
    status: int
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "code": self.code, "message": self.message}


class ServiceTokens:
    """Mints service tokens (iss=etl, aud=billing; docs/contracts.md, the recipe), reused until
    shortly before they expire."""

    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._secret = secret
        self._ttl = ttl_seconds
        self._token = ""
        self._expires_at = 0.0

    def current(self) -> str:
        now = time.time()
        if now > self._expires_at - min(60, self._ttl / 2):
            issued = int(now)
            claims = {
                "iss": "etl",
                "sub": "etl",
                "aud": "billing",
                "iat": issued,
                "exp": issued + self._ttl,
            }
            self._token = jwt.encode(claims, self._secret, algorithm="HS256")
            self._expires_at = issued + self._ttl
        return self._token


class BillingClient:
    def __init__(self, settings: Settings, stop: threading.Event | None = None) -> None:
        self._settings = settings
        # Set on SIGTERM: back-off waits end at once and the pass gives up (state stays saved).
        self._stop = stop or threading.Event()
        self._tokens = ServiceTokens(settings.service_jwt_secret, settings.token_ttl_seconds)
        self._http = httpx.Client(
            base_url=settings.billing_url,
            timeout=settings.http_timeout_seconds,
            headers={"User-Agent": "cinema-etl"},
        )

    def close(self) -> None:
        self._http.close()

    def put_film(self, film_id: str, body: dict, *, request_id: str) -> Delivered | Rejected:
        return self._send("PUT", f"/internal/v1/films/{film_id}", body, request_id)

    def put_plan(self, plan_id: str, body: dict, *, request_id: str) -> Delivered | Rejected:
        return self._send("PUT", f"/internal/v1/plans/{plan_id}", body, request_id)

    def put_promo_code(self, promo_id: str, body: dict, *, request_id: str) -> Delivered | Rejected:
        return self._send("PUT", f"/internal/v1/promo-codes/{promo_id}", body, request_id)

    def put_personal_discount(
        self, discount_id: str, body: dict, *, request_id: str
    ) -> Delivered | Rejected:
        return self._send("PUT", f"/internal/v1/personal-discounts/{discount_id}", body, request_id)

    def delete(self, kind: str, object_id: str, *, request_id: str) -> Delivered | Rejected:
        collection = _COLLECTIONS.get(kind)
        if collection is None:
            return Rejected(0, "unknown_kind", f"deletion log names an unknown model {kind!r}")
        return self._send("DELETE", f"/internal/v1/{collection}/{object_id}", None, request_id)

    def _send(
        self, method: str, path: str, body: dict | None, request_id: str
    ) -> Delivered | Rejected:
        attempts = self._settings.http_attempts
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.request(
                    method,
                    path,
                    json=body,
                    headers={
                        "Authorization": f"Bearer {self._tokens.current()}",
                        "X-Request-ID": request_id,
                    },
                )
                return self._outcome(method, path, response)
            except (httpx.TransportError, BillingUnavailable) as exc:
                reason = str(exc) or type(exc).__name__
                if attempt == attempts or self._stop.is_set():
                    raise BillingUnavailable(f"{method} {path}: {reason}") from exc
                delay = self._settings.backoff(attempt)
                log.warning(
                    "retry",
                    extra={
                        "detail": "billing unavailable, retrying",
                        "method": method,
                        "path": path,
                        "attempt": attempt,
                        "retry_in_seconds": delay,
                        "reason": reason,
                        "request_id": request_id,
                    },
                )
                if self._stop.wait(delay):
                    raise BillingUnavailable(f"{method} {path}: {reason}; stopping") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _outcome(method: str, path: str, response: httpx.Response) -> Delivered | Rejected:
        status = response.status_code
        if status == 200 or status == 201:
            try:
                return Delivered(changed=bool(response.json().get("changed", True)))
            except ValueError:
                return Delivered(changed=True)
        code, message = _error(response)
        if status >= 500 or status in _SYSTEMIC_STATUSES:
            raise BillingUnavailable(f"{status} {code}: {message}")
        if method == "DELETE" and status == 404:
            return Delivered(changed=False)
        if status in {404, 405} and method == "PUT":
            raise BillingUnavailable(f"{status} {code}: {message} (is billing's internal API up?)")
        return Rejected(status, code, message)


def _error(response: httpx.Response) -> tuple[str, str]:
    """billing's {"code", "message"} (or FastAPI's {"detail"}) from an error answer."""
    try:
        body = response.json()
    except ValueError:
        return "http_error", response.text[:300]
    if isinstance(body, dict):
        code = str(body.get("code") or "http_error")
        message = body.get("message") or body.get("detail") or ""
        return code, message if isinstance(message, str) else str(message)[:300]
    return "http_error", str(body)[:300]
