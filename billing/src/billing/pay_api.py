"""Client of pay_api's internal API (docs/contracts.md), the only way billing reaches Stripe.

Every call carries a fresh service token (iss=billing, aud=pay_api) and the current request id.
Transport errors are mapped here: `PayApiUnavailable` when the call may not have reached pay_api
or its answer is unknown (connect error, timeout, 5xx), `PayApiRejected` for a 4xx answer.

The transport is aiohttp (one session per process, keep-alive connections): the worker makes two
calls per renewal, and httpx's asynchronous client cost 1.3 ms of CPU a call where aiohttp costs
0.16 ms (bench/renewals.py measures the whole renewal; bench/README.md).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp

from billing.auth import mint_service_token
from billing.log import request_id_var

logger = logging.getLogger(__name__)


class PayApiError(Exception):
    """Base of pay_api call failures."""


class PayApiUnavailable(PayApiError):
    """No usable answer. `maybe_applied` is True when the request may have been applied."""

    def __init__(self, message: str, *, maybe_applied: bool) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class PayApiRejected(PayApiError):
    """pay_api answered 4xx with `{"code", "message"}`."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code


class PayApiClient:
    def __init__(
        self, *, base_url: str, secret: str, connect_timeout: float, timeout: float
    ) -> None:
        self._secret = secret
        self._base_url = base_url.rstrip("/")
        # connect: getting a connection (from the pool, or a new one); sock_read: each wait for
        # pay_api's answer, as httpx's read timeout was.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=timeout
        )
        self._session: aiohttp.ClientSession | None = None  # made in the running loop

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def register_payment(
        self,
        *,
        payment_id: str,
        user_id: str,
        amount: int,
        currency: str,
        description: str,
        return_url: str,
        gross_amount: int | None = None,
        discount_amount: int = 0,
        promo_code: str | None = None,
    ) -> dict[str, Any]:
        """POST /internal/v1/payments (idempotent by payment_id). `amount` is what is charged (the
        net); gross, discount and the code are for the page to show."""
        body = {
            "payment_id": payment_id,
            "user_id": user_id,
            "amount": amount,
            "currency": currency,
            "description": description,
            "return_url": return_url,
            "gross_amount": amount + discount_amount if gross_amount is None else gross_amount,
            "discount_amount": discount_amount,
            "promo_code": promo_code,
        }
        return await self._call("POST", "/internal/v1/payments", json=body)

    async def charge_off_session(self, payment_id: str, *, attempt: int) -> dict[str, Any]:
        """POST /internal/v1/payments/{id}/charge-off-session: a renewal, with the customer away;
        pay_api confirms each attempt number at most once."""
        return await self._call(
            "POST",
            f"/internal/v1/payments/{payment_id}/charge-off-session",
            json={"attempt": attempt},
        )

    async def charge_renewals(self, charges: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST /internal/v1/renewals/charges: a batch of renewals, each registered if new and
        charged off-session as its `attempt` (each number confirmed at most once). One result per
        charge, in order: `{"payment_id", "payment": {...}}` or `{"payment_id", "error":
        {"status", "code", "message"}}`. An answer that does not match the batch is no answer."""
        data = await self._call("POST", "/internal/v1/renewals/charges", json={"charges": charges})
        results = data.get("results")
        if (
            not isinstance(results, list)
            or len(results) != len(charges)
            or any(
                not isinstance(r, dict) or r.get("payment_id") != c["payment_id"]
                for r, c in zip(results, charges, strict=False)
            )
        ):
            raise PayApiUnavailable("pay_api's batch answer does not match", maybe_applied=True)
        return results

    async def get_payment(self, payment_id: str) -> dict[str, Any] | None:
        """GET /internal/v1/payments/{id}?refresh=1 (pay_api asks Stripe first); None if unknown."""
        return await self._call_or_none(
            "GET", f"/internal/v1/payments/{payment_id}", params={"refresh": "1"}
        )

    async def cancel_payment(self, payment_id: str) -> dict[str, Any] | None:
        """POST /internal/v1/payments/{id}/cancel; None if pay_api never had it."""
        return await self._call_or_none("POST", f"/internal/v1/payments/{payment_id}/cancel")

    async def create_refund(
        self, *, refund_id: str, payment_id: str, amount: int, reason: str
    ) -> dict[str, Any]:
        """POST /internal/v1/refunds (idempotent by refund_id)."""
        body = {
            "refund_id": refund_id,
            "payment_id": payment_id,
            "amount": amount,
            "reason": reason,
        }
        return await self._call("POST", "/internal/v1/refunds", json=body)

    async def get_refund(self, refund_id: str) -> dict[str, Any] | None:
        """GET /internal/v1/refunds/{id}?refresh=1; None if pay_api never had it."""
        return await self._call_or_none(
            "GET", f"/internal/v1/refunds/{refund_id}", params={"refresh": "1"}
        )

    async def find_customer(self, stripe_customer_id: str) -> dict[str, Any] | None:
        """GET /internal/v1/customers/{stripe_customer_id} → {user_id, ...}; None if unknown."""
        return await self._call_or_none("GET", f"/internal/v1/customers/{stripe_customer_id}")

    async def _call_or_none(self, method: str, path: str, **kwargs: Any) -> dict[str, Any] | None:
        try:
            return await self._call(method, path, **kwargs)
        except PayApiRejected as exc:
            if exc.status_code == 404:
                return None
            raise

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {
            "Authorization": "Bearer " + mint_service_token(self._secret, audience="pay_api"),
        }
        request_id = request_id_var.get()
        if request_id:
            headers["X-Request-ID"] = request_id
        try:
            async with self._http().request(
                method, self._base_url + path, headers=headers, **kwargs
            ) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Never sent: no connection to pay_api (refused, unreachable, or none in time).
            logger.warning("pay_api unreachable", extra={"path": path, "error": repr(exc)})
            raise PayApiUnavailable(repr(exc), maybe_applied=False) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            logger.warning("pay_api answer lost", extra={"path": path, "error": repr(exc)})
            raise PayApiUnavailable(repr(exc), maybe_applied=True) from exc
        if status >= 500:
            logger.warning("pay_api failed", extra={"path": path, "status": status})
            raise PayApiUnavailable(f"pay_api answered {status}", maybe_applied=True)
        try:
            data = json.loads(text)
        except ValueError:
            data = {}
        if status >= 400:
            if not isinstance(data, dict):
                data = {}
            raise PayApiRejected(
                status,
                str(data.get("code", "error")),
                str(data.get("message", text[:200])),
            )
        if not isinstance(data, dict):
            raise PayApiUnavailable("pay_api answered a non-object", maybe_applied=True)
        return data
