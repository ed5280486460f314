"""billing's public API as a user sees it, and its internal API as the movie service and admin do."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from .stack import StackSettings, exchange_hooks
from .tokens import service_token, user_token

Exchange = Callable[[httpx.Response], None]


def _client(base_url: str, token: str, on_exchange: Exchange | None) -> httpx.Client:
    return httpx.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
        event_hooks=exchange_hooks(on_exchange),
    )


class BillingClient:
    """A user of the cinema talking to billing with their token."""

    def __init__(
        self,
        settings: StackSettings,
        user_id: str | None = None,
        on_exchange: Exchange | None = None,
    ):
        self.user_id = user_id or str(uuid.uuid4())
        self.http = _client(settings.billing_url, user_token(settings, self.user_id), on_exchange)

    def plans(self) -> httpx.Response:
        return self.http.get("/api/v1/plans")

    def buy(
        self, plan_id: str, idempotency_key: str | None = None, promo_code: str | None = None
    ) -> httpx.Response:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"plan_id": plan_id, **({"promo_code": promo_code} if promo_code else {})}
        return self.http.post("/api/v1/subscriptions", json=body, headers=headers)

    def price(self, plan_id: str, promo_code: str | None = None) -> httpx.Response:
        params = {"promo_code": promo_code} if promo_code else {}
        return self.http.get(f"/api/v1/plans/{plan_id}/price", params=params)

    def subscriptions(self) -> httpx.Response:
        return self.http.get("/api/v1/subscriptions")

    def cancel(self, subscription_id: str) -> httpx.Response:
        return self.http.post(f"/api/v1/subscriptions/{subscription_id}/cancel")

    def resume(self, subscription_id: str) -> httpx.Response:
        return self.http.post(f"/api/v1/subscriptions/{subscription_id}/resume")

    def card_link(self, subscription_id: str) -> httpx.Response:
        return self.http.post(f"/api/v1/subscriptions/{subscription_id}/card")

    def subscription(self, subscription_id: str) -> dict[str, Any]:
        items = self.subscriptions().json()["items"]
        return next(s for s in items if s["id"] == subscription_id)

    def wait_for_subscription(
        self, subscription_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 40
    ) -> dict[str, Any]:
        """Poll the subscription until `done(it)`; the last view if it never is."""
        deadline = time.monotonic() + timeout
        while True:
            subscription = self.subscription(subscription_id)
            if done(subscription) or time.monotonic() > deadline:
                return subscription
            time.sleep(0.5)

    def payments(self, limit: int = 20, offset: int = 0) -> httpx.Response:
        return self.http.get("/api/v1/payments", params={"limit": limit, "offset": offset})

    def payment(self, payment_id: str) -> httpx.Response:
        return self.http.get(f"/api/v1/payments/{payment_id}")

    def refund(self, payment_id: str, idempotency_key: str | None = None) -> httpx.Response:
        key = idempotency_key or str(uuid.uuid4())
        return self.http.post(
            f"/api/v1/payments/{payment_id}/refund", headers={"Idempotency-Key": key}
        )

    def access(self, film_id: str) -> httpx.Response:
        return self.http.get(f"/api/v1/access/films/{film_id}")

    def wait_for_payment(
        self, payment_id: str, statuses: set[str], timeout: float = 30
    ) -> dict[str, Any]:
        """Poll the payment until its status is one of `statuses`; the last view if it never is."""
        deadline = time.monotonic() + timeout
        while True:
            payment = self.payment(payment_id).json()
            if payment.get("status") in statuses or time.monotonic() > deadline:
                return payment
            time.sleep(0.3)


class BillingInternalClient:
    """Another service calling billing's internal API with a service token."""

    def __init__(self, settings: StackSettings, issuer: str, on_exchange: Exchange | None = None):
        self.http = _client(
            settings.billing_url, service_token(settings, issuer, "billing", 3600), on_exchange
        )

    def access(self, user_id: str, film_id: str) -> httpx.Response:
        return self.http.get("/internal/v1/access", params={"user_id": user_id, "film_id": film_id})

    def promo_redemptions(self, promo_code_id: str) -> httpx.Response:
        return self.http.get(
            f"/internal/v1/promo-codes/{promo_code_id}/redemptions", params={"limit": 200}
        )

    def user_payments(self, user_id: str) -> httpx.Response:
        return self.http.get(f"/internal/v1/users/{user_id}/payments")

    def refund(
        self,
        payment_id: str,
        amount: int | None,
        reason: str,
        end_subscription: bool,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        return self.http.post(
            f"/internal/v1/payments/{payment_id}/refunds",
            json={"amount": amount, "reason": reason, "end_subscription": end_subscription},
            headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
        )
