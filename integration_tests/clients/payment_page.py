"""The payment page without a browser: the same calls Stripe.js (localstripe's mock) makes to the
Stripe API and the page's script makes to pay_api, in the same order.

This is what `make demo` pays with; the browser tests drive the real page instead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from .stack import StackSettings, exchange_hooks

CARD_OK = "4242424242424242"
CARD_DECLINED_AT_CHARGE = "4000000000000341"
CARD_3DS = "4000002760003184"


@dataclass
class PaymentResult:
    status: str
    body: dict[str, Any]


class PaymentPage:
    def __init__(self, settings: StackSettings, payment_url: str, on_exchange=None):
        self.payment_url = payment_url.rstrip("/")
        hooks = exchange_hooks(on_exchange)
        self.stripe = httpx.Client(base_url=settings.stripe_js_base, timeout=15, event_hooks=hooks)
        self.page = httpx.Client(timeout=30, event_hooks=hooks)

    def open(self) -> httpx.Response:
        """GET the page, as the browser does when the user follows the link."""
        return self.page.get(self.payment_url)

    def pay(
        self, card_number: str, authenticate: bool | None = True, sync: bool = True
    ) -> PaymentResult:
        """See `_pay`; a dropped connection is an answer too (the page shows an error)."""
        try:
            return self._pay(card_number, authenticate, sync)
        except httpx.TransportError as error:
            return PaymentResult("connection_lost", {"error": repr(error)})

    def _pay(
        self, card_number: str, authenticate: bool | None = True, sync: bool = True
    ) -> PaymentResult:
        """Save the card with a SetupIntent, ask pay_api to charge it, finish 3-D Secure if asked.

        `authenticate=None` leaves the charge's 3-D Secure dialog open (the user walked away);
        `sync=False` closes the page right after the dialog, before it tells pay_api."""
        setup = self.page.post(f"{self.payment_url}/setup-intent")
        if setup.status_code == 409:  # nothing left to pay: the page shows the payment's state
            status = self.status()
            return PaymentResult(status.get("status", "closed"), status)
        if setup.status_code >= 500:
            # No copy answered (say, nginx's 503 after a killed worker's keep-alive connection
            # failed: a POST is never sent twice): the page shows the error, the user tries again.
            return PaymentResult(f"http_{setup.status_code}", _json_or_text(setup))
        setup.raise_for_status()
        saved = self._confirm_card_setup(setup.json(), card_number, authenticate)
        if isinstance(saved, PaymentResult):
            return saved
        setup_intent_id, publishable_key = saved
        charge = self.page.post(
            f"{self.payment_url}/charge", json={"setup_intent_id": setup_intent_id}
        )
        body = charge.json()
        if body.get("status") != "requires_action":
            return PaymentResult(body.get("status", f"http_{charge.status_code}"), body)
        # stripe.confirmCardPayment(secret): the mock's dialog, then the page asks pay_api to sync
        if authenticate is None:
            return PaymentResult("requires_action", body)
        return self._authenticate(body["client_secret"], publishable_key, authenticate, sync)

    def _authenticate(
        self, payment_intent_secret: str, publishable_key: str, success: bool, sync: bool = True
    ) -> PaymentResult:
        """The mock's 3-D Secure dialog for a PaymentIntent, then the page's /sync."""
        payment_intent_id = payment_intent_secret.split("_secret_")[0]
        self.stripe.post(
            f"/v1/payment_intents/{payment_intent_id}/_authenticate",
            params={"success": "true" if success else "false"},
            json={"key": publishable_key, "client_secret": payment_intent_secret},
        )
        if not sync:
            return PaymentResult("authenticated", {})
        return self.sync()

    def sync(self) -> PaymentResult:
        """The page's /sync after the 3-D Secure dialog: pay_api reads Stripe's answer."""
        synced = self.page.post(f"{self.payment_url}/sync")
        return PaymentResult(
            synced.json().get("status", f"http_{synced.status_code}"), synced.json()
        )

    def _confirm_card_setup(
        self, setup: dict[str, Any], card_number: str, authenticate: bool | None
    ) -> tuple[str, str] | PaymentResult:
        """stripe.confirmCardSetup(secret, {payment_method: {card}}) as localstripe's Stripe.js
        sends it; (SetupIntent id, publishable key)."""
        secret = setup["client_secret"]
        publishable_key = setup["publishable_key"]
        setup_intent_id = secret.split("_secret_")[0]
        confirmed = self.stripe.post(
            f"/v1/setup_intents/{setup_intent_id}/confirm",
            json={
                "key": publishable_key,
                "use_stripe_sdk": True,
                "client_secret": secret,
                "payment_method_data": {
                    "type": "card",
                    "card": {
                        "number": card_number,
                        "exp_month": 12,
                        "exp_year": 2034,
                        "cvc": "123",
                    },
                },
            },
        )
        if confirmed.status_code != 200:
            return PaymentResult("setup_failed", confirmed.json())
        if confirmed.json()["status"] == "requires_action":
            # the mock's 3-D Secure dialog for the card setup
            action = "cancel" if authenticate is False else "confirm"
            confirmed = self.stripe.post(
                f"/v1/setup_intents/{setup_intent_id}/{action}",
                json={"key": publishable_key, "use_stripe_sdk": True, "client_secret": secret},
            )
            if confirmed.json().get("status") != "succeeded":
                return PaymentResult("setup_failed", confirmed.json())
        return setup_intent_id, publishable_key

    def authenticate_renewal(self, link: str, sync: bool = True) -> PaymentResult:
        """The emailed authentication link: the page gives the renewal's client secret and saved
        card, Stripe.js confirms with the customer present (the mock's dialog), then /sync
        (`sync=False`: not yet, the caller syncs)."""
        details = self.page.post(link)
        if details.status_code != 200:
            return PaymentResult(f"http_{details.status_code}", details.json())
        body = details.json()
        return self._authenticate(body["client_secret"], body["publishable_key"], True, sync)

    def save_card(self, link: str, card_number: str) -> PaymentResult:
        """The card-update page (`/cards/<user>?t=...`): save a card for the next renewals."""
        base, _, query = link.partition("?")
        setup = self.page.post(f"{base}/setup-intent?{query}")
        setup.raise_for_status()
        saved = self._confirm_card_setup(setup.json(), card_number, True)
        if isinstance(saved, PaymentResult):
            return saved
        answer = self.page.post(f"{base}/save?{query}", json={"setup_intent_id": saved[0]})
        return PaymentResult(
            answer.json().get("status", f"http_{answer.status_code}"), answer.json()
        )

    def status(self) -> dict[str, Any]:
        return self.page.get(f"{self.payment_url}/status").json()


def _json_or_text(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {"text": response.text}
    return body if isinstance(body, dict) else {"body": body}
