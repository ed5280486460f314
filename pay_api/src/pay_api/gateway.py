"""The boundary with Stripe: with its HTTP client (`stripe_http.py`), the only module that imports
`stripe`.

Everything crossing it is plain data (`IntentState`, `RefundState`, `SetupState`) and our own
errors (`GatewayUnavailable`, `GatewayRejected`, `CardDeclined`); Stripe's exceptions never leak.
The same code runs against real Stripe and against localstripe; what localstripe cannot do is
listed in `LocalstripeDifferences`, the one place that knows about it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote_plus

import httpx
import stripe

from pay_api.config import Settings
from pay_api.errors import GatewayRejected, GatewayUnavailable, PayApiError
from pay_api.stripe_http import DirectPosts, Urllib3Client

log = logging.getLogger(__name__)

WEBHOOK_TOLERANCE_SECONDS = 300
WEBHOOK_NAME = "pay_api"  # localstripe's name for our registration
CONNECT_TIMEOUT_SECONDS = 5.0
# Keep-alive connections kept per Stripe host beyond PAY_API_STRIPE_CONCURRENCY: the web threads'
# own requests (gunicorn's PAY_API_WEB_THREADS, 4). More at once still go, on connections closed
# after use.
SPARE_CONNECTIONS = 8
# Stripe's decline code when an off-session charge needs the customer's 3-D Secure.
AUTHENTICATION_REQUIRED = "authentication_required"


class CardDeclined(PayApiError):
    """The bank refused the card (Stripe's 402 `card_error`); the user may try another card."""

    status, code, message = 402, "card_declined", "Your card was declined."
    decline_code: str | None = None


class InvalidSignature(PayApiError):
    status, code, message = 400, "invalid_signature", "The webhook signature is not valid."


class InvalidEvent(PayApiError):
    """Correctly signed, but not a Stripe event we can read (nothing is stored)."""

    status, code, message = 400, "invalid_event", "The webhook body is not a Stripe event."


def _signature_timestamps(header: str | None) -> list[int]:
    """The `t=` values of a `Stripe-Signature` header (none when it is malformed)."""
    if not header or len(header) > 4096:
        return []
    values = [part.split("=", 1)[1] for part in header.split(",") if part.startswith("t=")]
    if not values or not all(v.isdigit() and len(v) <= 12 for v in values):
        return []
    return [int(v) for v in values]


# --- localstripe's differences: the one place ---------------------------------------------------


class LocalstripeDifferences:
    """What pay_api does differently when STRIPE_API_BASE points at localstripe (1.15.10).

    * localstripe answers 400 "Unexpected ..." to parameters it does not know. The ones below are
      sent to real Stripe only; none of them changes what is charged: `description` is shown in
      the Dashboard, `use_stripe_sdk` lets Stripe.js finish 3-D Secure after a server-side
      confirmation (localstripe's mock finishes it anyway).
    * localstripe ignores Idempotency-Key, so a create retried by the SDK would make a second
      object. For refunds that would return money twice: refund creation is never retried by the
      SDK there (pay_api looks the refund up by `metadata.refund_id` before creating it again).
      Other creates (Customer, SetupIntent, PaymentIntent) leave at worst an unused object.
    * Off-session confirmation (renewals). localstripe refuses `off_session` on confirm, so it is
      sent to real Stripe only; then localstripe, not knowing the customer is away, answers a card
      that needs 3-D Secure with `requires_action`, where real Stripe declines with the code
      `authentication_required` (the intent back in `requires_payment_method`). `off_session_answer`
      names localstripe's answer the way Stripe's reads, so pay_api and billing see one outcome:
      `authentication_required`, finished by the customer on the emailed link either way
      (`confirmCardPayment` with the client secret and the saved card: Stripe.js confirms again
      with 3-D Secure; the mock completes the pending action).
    * Everything else is handled by the design (stored ids, our own refund cap, the reconciler) or
      by the wrapper scripts/localstripe_server.py (confirm with a new payment method).
    """

    REAL_STRIPE_ONLY_PARAMS = frozenset({"description", "use_stripe_sdk", "off_session"})

    def __init__(self, active: bool) -> None:
        self.active = active

    def params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if not self.active:
            return dict(params)
        return {k: v for k, v in params.items() if k not in self.REAL_STRIPE_ONLY_PARAMS}

    def retries_for_refund_create(self, configured: int) -> int:
        return 0 if self.active else configured

    def off_session_answer(self, state: IntentState) -> IntentState:
        """localstripe's `requires_action` after an off-session confirmation, read as Stripe's
        `authentication_required` decline (see above)."""
        if self.active and state.status == "requires_action":
            return replace(
                state,
                failure_code=AUTHENTICATION_REQUIRED,
                failure_message="This payment needs the cardholder's authentication.",
            )
        return state


# --- plain data crossing the boundary -----------------------------------------------------------


def _plain(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return dict(obj)


def _id_of(value: Any) -> str | None:
    """An expandable field: an id, an expanded object, or nothing."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return value.get("id")


@dataclass(frozen=True)
class IntentState:
    """What pay_api needs to know about a PaymentIntent."""

    id: str
    status: str  # Stripe's status
    amount: int
    currency: str
    client_secret: str | None
    payment_method_id: str | None  # of the latest attempt, also after a decline
    failure_code: str | None
    failure_message: str | None
    cancellation_reason: str | None
    # Refunded on the latest charge: known only when that charge came expanded and succeeded
    # (a refund only ever counts against money that was taken).
    amount_refunded: int | None
    payment_id: str | None  # metadata.payment_id
    customer_id: str | None = None

    @classmethod
    def from_stripe(cls, obj: Any) -> IntentState:
        data = _plain(obj)
        error = data.get("last_payment_error") or {}
        charge = data.get("latest_charge")
        amount_refunded = (
            int(charge.get("amount_refunded") or 0)
            if isinstance(charge, Mapping) and charge.get("status") == "succeeded"
            else None
        )
        return cls(
            id=data["id"],
            status=data["status"],
            amount=int(data["amount"]),
            currency=str(data["currency"]).lower(),
            client_secret=data.get("client_secret"),
            # Real Stripe empties `payment_method` after a failure and keeps it in the error.
            payment_method_id=_id_of(data.get("payment_method"))
            or _id_of(error.get("payment_method")),
            failure_code=(error.get("decline_code") or error.get("code")) if error else None,
            failure_message=error.get("message") if error else None,
            cancellation_reason=data.get("cancellation_reason"),
            amount_refunded=amount_refunded,
            payment_id=(data.get("metadata") or {}).get("payment_id"),
            customer_id=_id_of(data.get("customer")),
        )


@dataclass(frozen=True)
class RefundState:
    id: str
    status: str  # Stripe's: pending, requires_action, succeeded, failed, canceled
    amount: int
    payment_intent_id: str | None
    refund_id: str | None  # metadata.refund_id
    failure_reason: str | None
    currency: str | None = None

    @classmethod
    def from_stripe(cls, obj: Any) -> RefundState:
        data = _plain(obj)
        return cls(
            id=data["id"],
            status=data.get("status") or "pending",
            amount=int(data["amount"]),
            payment_intent_id=_id_of(data.get("payment_intent")),
            refund_id=(data.get("metadata") or {}).get("refund_id"),
            failure_reason=data.get("failure_reason"),
            currency=str(data.get("currency") or "").lower() or None,
        )


@dataclass(frozen=True)
class SetupState:
    id: str
    status: str
    customer_id: str | None
    payment_method_id: str | None
    client_secret: str | None = None
    # Never confirmed: no card given yet and no error from an attempt (it can be handed out again).
    untouched: bool = False

    @classmethod
    def from_stripe(cls, obj: Any) -> SetupState:
        data = _plain(obj)
        payment_method_id = _id_of(data.get("payment_method"))
        return cls(
            id=data["id"],
            status=data["status"],
            customer_id=_id_of(data.get("customer")),
            payment_method_id=payment_method_id,
            client_secret=data.get("client_secret"),
            untouched=data["status"] == "requires_payment_method"
            and payment_method_id is None
            and not data.get("last_setup_error"),
        )


# --- the gateway --------------------------------------------------------------------------------


@contextmanager
def stripe_errors_mapped() -> Iterator[None]:
    """Map Stripe's exceptions to ours (see errors.py)."""
    try:
        yield
    except stripe.CardError as exc:
        declined = CardDeclined(exc.user_message or "Your card was declined.")
        declined.decline_code = (getattr(exc.error, "decline_code", None) or exc.code) or None
        raise declined from exc
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        log.warning("stripe unreachable", extra={"error": str(exc)})
        raise GatewayUnavailable() from exc
    except stripe.APIError as exc:  # 5xx: Stripe may or may not have done it
        log.warning("stripe server error", extra={"error": str(exc)})
        raise GatewayUnavailable() from exc
    except stripe.InvalidRequestError as exc:
        raise GatewayRejected(str(exc._message or exc), stripe_code=exc.code) from exc
    except stripe.StripeError as exc:  # authentication, permission, idempotency...
        log.error("stripe refused the request", extra={"error": str(exc)})
        raise GatewayRejected(str(exc._message or exc), stripe_code=exc.code) from exc


class Gateway:
    """Thin, typed wrapper over `stripe.StripeClient`."""

    def __init__(self, settings: Settings, *, http_client: stripe.HTTPClient | None = None) -> None:
        """`http_client`: another client under the SDK (bench/stripe_client.py compares)."""
        self.settings = settings
        self.differences = LocalstripeDifferences(settings.uses_localstripe)
        base_addresses = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        base_url = settings.stripe_api_base or stripe.DEFAULT_API_BASE
        self.http_client = http_client or Urllib3Client(
            base_url=base_url,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=settings.stripe_timeout_seconds,
            pool_size=settings.stripe_concurrency + SPARE_CONNECTIONS,
        )
        self.client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses=base_addresses,
            max_network_retries=settings.stripe_max_network_retries,
            http_client=self.http_client,
        )
        # A renewal's two requests (create, confirm) skip the SDK's objects: stripe_http.py.
        self.direct = DirectPosts(
            self.client,
            base_url=base_url,
            max_network_retries=settings.stripe_max_network_retries,
        )

    @property
    def in_flight_seconds(self) -> float:
        """How long a request we sent may still reach Stripe after we stopped waiting for it:
        the connect and read timeouts, plus a margin for the network."""
        return CONNECT_TIMEOUT_SECONDS + self.settings.stripe_timeout_seconds + 5.0

    # customers and saved cards

    def create_customer(self, *, user_id: str) -> str:
        """A Stripe Customer for this user (idempotent at Stripe by user id)."""
        with stripe_errors_mapped():
            customer = self.client.v1.customers.create(
                params={"metadata": {"user_id": user_id}},
                options={"idempotency_key": f"pay_api-customer-{user_id}"},
            )
        return customer.id

    def create_setup_intent(self, *, customer_id: str, payment_id: str) -> tuple[str, str]:
        """A SetupIntent saving a card for later (off-session) use; returns (id, client_secret)."""
        with stripe_errors_mapped():
            intent = self.client.v1.setup_intents.create(
                params={
                    "customer": customer_id,
                    "usage": "off_session",
                    "payment_method_types": ["card"],
                    "metadata": {"payment_id": payment_id},
                }
            )
        return intent.id, intent.client_secret

    def retrieve_setup_intent(self, setup_intent_id: str) -> SetupState:
        with stripe_errors_mapped():
            return SetupState.from_stripe(self.client.v1.setup_intents.retrieve(setup_intent_id))

    # payment intents

    def create_payment_intent(
        self,
        *,
        payment_id: str,
        customer_id: str,
        payment_method_id: str,
        amount: int,
        currency: str,
        description: str,
    ) -> IntentState:
        """An UNCONFIRMED PaymentIntent: nothing is charged until `confirm_payment_intent`.

        The Idempotency-Key is the payment id (plus the card, so that after a crash between this
        call and the commit of the id, a retry with another card gets a fresh intent instead of
        Stripe's "same key, other parameters" error; the lost one was never confirmed).
        """
        params = self.differences.params(
            {
                "amount": amount,
                "currency": currency,
                "customer": customer_id,
                "payment_method": payment_method_id,
                "payment_method_types": ["card"],
                "metadata": {"payment_id": payment_id},
                "description": description[:1000] or None,
            }
        )
        with stripe_errors_mapped():
            intent = self.direct.post(
                "/v1/payment_intents",
                params,
                idempotency_key=f"pay_api-pi-create-{payment_id}-{payment_method_id}",
            )
        return IntentState.from_stripe(intent)

    def confirm_payment_intent(
        self,
        intent_id: str,
        *,
        payment_method_id: str,
        idempotency_key: str,
        off_session: bool = False,
    ) -> IntentState:
        """Confirm with the customer present (or, `off_session`, away: a renewal); a decline comes
        back as a state, not an error.

        A confirmation Stripe refuses because of the intent's state (already succeeded, canceled)
        also answers the current state: the caller applies whatever Stripe says.
        """
        if off_session:
            params = self.differences.params(
                {"payment_method": payment_method_id, "off_session": True}
            )
            state = self._confirm(intent_id, params, idempotency_key)
            return self.differences.off_session_answer(state)
        params = self.differences.params(
            {"payment_method": payment_method_id, "use_stripe_sdk": True}
        )
        return self._confirm(intent_id, params, idempotency_key)

    def _confirm(self, intent_id: str, params: dict[str, Any], idempotency_key: str) -> IntentState:
        try:
            with stripe_errors_mapped():
                intent = self.direct.post(
                    f"/v1/payment_intents/{quote_plus(intent_id)}/confirm",
                    params,
                    idempotency_key=idempotency_key,
                )
            return IntentState.from_stripe(intent)
        except CardDeclined as declined:
            state = self.retrieve_payment_intent(intent_id)
            if state.failure_code is None:  # the error carries the reason, the intent may not
                state = replace(
                    state,
                    failure_code=declined.decline_code or "card_declined",
                    failure_message=declined.message,
                )
            return state
        except GatewayRejected as rejected:
            state = self.retrieve_payment_intent(intent_id)
            if state.status in ("requires_payment_method", "requires_confirmation"):
                raise rejected  # refused for another reason than its state
            return state

    def retrieve_payment_intent(self, intent_id: str) -> IntentState:
        """The intent with its latest charge expanded (so its refunded total is known)."""
        with stripe_errors_mapped():
            return IntentState.from_stripe(
                self.client.v1.payment_intents.retrieve(
                    intent_id, params={"expand": ["latest_charge"]}
                )
            )

    def cancel_payment_intent(self, intent_id: str) -> IntentState:
        """Cancel if it can still be charged; otherwise answer its state (e.g. succeeded)."""
        try:
            with stripe_errors_mapped():
                intent = self.client.v1.payment_intents.cancel(
                    intent_id, options={"idempotency_key": f"pay_api-pi-cancel-{intent_id}"}
                )
            return IntentState.from_stripe(intent)
        except GatewayRejected:
            state = self.retrieve_payment_intent(intent_id)
            if state.status not in ("succeeded", "processing", "canceled"):
                raise
            return state

    # refunds

    def create_refund(
        self, *, refund_id: str, payment_intent_id: str, amount: int, reason: str | None
    ) -> RefundState:
        metadata = {"refund_id": refund_id}
        if reason:
            metadata["reason"] = reason[:500]
        with stripe_errors_mapped():
            refund = self.client.v1.refunds.create(
                params={
                    "payment_intent": payment_intent_id,
                    "amount": amount,
                    "metadata": metadata,
                },
                options={
                    "idempotency_key": f"pay_api-refund-{refund_id}",
                    "max_network_retries": self.differences.retries_for_refund_create(
                        self.settings.stripe_max_network_retries
                    ),
                },
            )
        return RefundState.from_stripe(refund)

    def find_refund(self, *, payment_intent_id: str, refund_id: str) -> RefundState | None:
        """The refund made at Stripe for our refund id, if any (after a crash or lost answer)."""
        with stripe_errors_mapped():
            page = self.client.v1.refunds.list(
                params={"payment_intent": payment_intent_id, "limit": 100}
            )
            for refund in page.auto_paging_iter():
                state = RefundState.from_stripe(refund)
                if state.refund_id == refund_id:
                    return state
        return None

    def retrieve_refund(self, stripe_refund_id: str) -> RefundState:
        with stripe_errors_mapped():
            return RefundState.from_stripe(self.client.v1.refunds.retrieve(stripe_refund_id))

    # webhooks

    def parse_webhook(self, payload: bytes, signature_header: str | None) -> Any:
        """Verify `Stripe-Signature` over the raw body; the parsed JSON (any shape: the caller
        checks it is an event). A timestamp further than the tolerance from now, in the past
        (a replay) or in the future (Stripe's check lets those through), is refused too."""
        timestamps = _signature_timestamps(signature_header)
        now = time.time()
        if not timestamps or any(abs(now - t) > WEBHOOK_TOLERANCE_SECONDS for t in timestamps):
            raise InvalidSignature()
        try:
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8"),
                signature_header,
                self.settings.stripe_webhook_secret,
                tolerance=WEBHOOK_TOLERANCE_SECONDS,
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
            raise InvalidSignature() from exc
        try:
            return json.loads(payload)
        except (ValueError, RecursionError) as exc:  # signed, but not JSON we can read
            raise InvalidEvent("The webhook body is not JSON.") from exc

    def register_localstripe_webhook(self, *, attempts: int = 10, pause: float = 0.5) -> bool:
        """Tell localstripe where to send events (`POST /_config/webhooks/pay_api`)."""
        if not self.differences.active:
            return False
        url = f"{self.settings.stripe_api_base.rstrip('/')}/_config/webhooks/{WEBHOOK_NAME}"
        body = {
            "url": self.settings.webhook_endpoint,
            "secret": self.settings.stripe_webhook_secret,
        }
        for attempt in range(1, attempts + 1):
            try:
                response = httpx.post(url, json=body, timeout=2.0)
                if response.status_code < 300:
                    log.info("webhook registered with localstripe", extra={"url": body["url"]})
                    return True
                log.warning(
                    "localstripe refused the webhook", extra={"http_status": response.status_code}
                )
            except httpx.HTTPError as exc:
                log.info(
                    "localstripe not reachable yet",
                    extra={"attempt": attempt, "error": str(exc)},
                )
            time.sleep(pause * attempt)
        log.error("could not register the webhook with localstripe", extra={"url": url})
        return False
