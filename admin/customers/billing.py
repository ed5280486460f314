"""billing's internal API as the admin uses it (docs/contracts.md, "admin (iss=admin)"), with a
service token minted per call (HS256, iss=admin, aud=billing, 5 minutes).

Every failure is a BillingError carrying billing's own {"code", "message"}; a missing answer
(connection refused, timeout, 5xx) is BillingUnavailable — its outcome is unknown, so an action
(a refund, a renewal retry, an end) may be submitted again with the same Idempotency-Key."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import jwt
from config.logging import request_id_var
from django.conf import settings

TOKEN_TTL_SECONDS = 300


class BillingError(Exception):
    """billing answered 4xx: a definite "no", with its stable code and human message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class BillingUnavailable(BillingError):
    """No usable answer (down, timeout, 5xx): the request may or may not have been applied."""


def _service_token() -> str:
    """iss=admin, aud=billing (docs/contracts.md, the recipe)."""
    if not settings.SERVICE_JWT_SECRET:
        raise BillingError(0, "not_configured", "SERVICE_JWT_SECRET is not set for the admin.")
    now = int(time.time())
    claims = {
        "iss": "admin",
        "sub": "admin",
        "aud": "billing",
        "iat": now,
        "exp": now + TOKEN_TTL_SECONDS,
    }
    return jwt.encode(claims, settings.SERVICE_JWT_SECRET, algorithm="HS256")


def _headers(idempotency_key: str = "") -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {_service_token()}",
        "X-Request-ID": request_id_var.get() or uuid.uuid4().hex,
    }
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def _send(client: httpx.Client, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
    """Send one request; no answer or a 5xx is BillingUnavailable, a 4xx BillingError."""
    try:
        response = client.send(request, stream=stream)
    except httpx.TimeoutException as exc:
        raise BillingUnavailable(0, "billing_timeout", "Billing did not answer in time.") from exc
    except httpx.TransportError as exc:
        raise BillingUnavailable(
            0, "billing_unavailable", f"Billing is unreachable ({exc})."
        ) from exc
    if response.status_code >= 400:
        response.read()
        response.close()
        code, message = _error_of(response)
        error = BillingUnavailable if response.status_code >= 500 else BillingError
        raise error(response.status_code, code, message)
    return response


def _call(
    method: str,
    path: str,
    *,
    body: dict | None = None,
    params: dict | None = None,
    idempotency_key: str = "",
) -> dict:
    with httpx.Client(timeout=settings.BILLING_TIMEOUT_SECONDS) as client:
        request = client.build_request(
            method,
            settings.BILLING_URL.rstrip("/") + path,
            json=body,
            params=params,
            headers=_headers(idempotency_key),
        )
        response = _send(client, request)
    try:
        return response.json()
    except ValueError as exc:
        raise BillingUnavailable(
            response.status_code, "bad_answer", "Billing answered something that is not JSON."
        ) from exc


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "http_error", f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return "http_error", f"HTTP {response.status_code}"
    message = body.get("message") or body.get("detail") or f"HTTP {response.status_code}"
    return str(body.get("code") or "http_error"), message if isinstance(message, str) else str(
        message
    )


def user_payments(*, user_id: uuid.UUID) -> list[dict]:
    """The user's payments, newest first (each with its refunds)."""
    return _call("GET", f"/internal/v1/users/{user_id}/payments").get("items", [])


def user_subscriptions(*, user_id: uuid.UUID) -> list[dict]:
    """The user's subscriptions, newest first."""
    return _call("GET", f"/internal/v1/users/{user_id}/subscriptions").get("items", [])


def user_refunds(*, user_id: uuid.UUID) -> list[dict]:
    """The user's refunds, newest first."""
    return _call("GET", f"/internal/v1/users/{user_id}/refunds").get("items", [])


def get_payment(*, payment_id: uuid.UUID) -> dict:
    """One payment (404 payment_not_found as a BillingError)."""
    return _call("GET", f"/internal/v1/payments/{payment_id}")


def refund_payment(
    *,
    payment_id: uuid.UUID,
    amount: int,
    reason: str,
    end_subscription: bool,
    idempotency_key: str,
) -> dict:
    """Ask billing for a refund; the same key and body always yield the same single refund."""
    return _call(
        "POST",
        f"/internal/v1/payments/{payment_id}/refunds",
        body={"amount": amount, "reason": reason, "end_subscription": end_subscription},
        idempotency_key=idempotency_key,
    )


def retry_renewal(*, subscription_id: uuid.UUID, idempotency_key: str) -> dict:
    """Charge the subscription's open renewal at the worker's next pass (409
    no_renewal_to_retry when none is open); answers the subscription."""
    return _call(
        "POST",
        f"/internal/v1/subscriptions/{subscription_id}/retry-renewal",
        idempotency_key=idempotency_key,
    )


def end_subscription(*, subscription_id: uuid.UUID, idempotency_key: str) -> dict:
    """End the subscription now: no access, no renewal (409 subscription_ended when it already
    ended); answers the subscription."""
    return _call(
        "POST", f"/internal/v1/subscriptions/{subscription_id}/end", idempotency_key=idempotency_key
    )


def promo_code_redemptions(*, promo_code_id: uuid.UUID, limit: int = 200) -> dict:
    """A promo code's redemptions, newest first, with its counter (404 promo_code_not_found
    while etl has not copied the code to billing yet)."""
    return _call("GET", f"/internal/v1/promo-codes/{promo_code_id}/redemptions?limit={limit}")


def report_summary(*, date_from, date_to, granularity: str) -> dict:
    """The dashboard's figures (docs/contracts.md, "Reports")."""
    params = {"date_from": str(date_from), "date_to": str(date_to), "granularity": granularity}
    return _call("GET", "/internal/v1/reports/summary", params=params)


def recent_payments(*, failed: bool = False, limit: int = 20) -> list[dict]:
    """The newest payments of every customer (failed=True: only those that ended after a decline)."""
    params = {"limit": limit, "failed": "true" if failed else "false"}
    return _call("GET", "/internal/v1/reports/recent-payments", params=params).get("items", [])


def search_customers(*, query: str) -> list[dict]:
    """Users a user/payment/refund/subscription id or a Stripe id points to."""
    return _call("GET", "/internal/v1/customers/search", params={"q": query}).get("matches", [])


def user_timeline(*, user_id: uuid.UUID) -> list[dict]:
    """Everything billing knows about the user, oldest first."""
    return _call("GET", f"/internal/v1/users/{user_id}/timeline").get("items", [])


def open_export(*, name: str, params: dict) -> Iterator[bytes]:
    """billing's CSV export (`payments` or `refunds`) as it arrives. billing's answer is checked
    before this returns (a refusal raises here, before the manager's download starts); the
    chunks are then passed on without keeping them."""
    # The timeout bounds each read: billing sends a batch of rows at a time.
    client = httpx.Client(timeout=settings.BILLING_TIMEOUT_SECONDS)
    request = client.build_request(
        "GET",
        f"{settings.BILLING_URL.rstrip('/')}/internal/v1/reports/{name}.csv",
        params={k: v for k, v in params.items() if v not in (None, "")},
        headers=_headers(),
    )
    try:
        response = _send(client, request, stream=True)
    except BillingError:
        client.close()
        raise

    def chunks() -> Iterator[bytes]:
        try:
            yield from response.iter_bytes()
        finally:
            response.close()
            client.close()

    return chunks()
