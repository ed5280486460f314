"""pay_api's exceptions: one tree, each with a stable code and an HTTP status.

Foreign errors (Stripe, the database) are mapped to these at the boundary (see gateway.py), so
views never see a `stripe.StripeError`.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException


class PayApiError(Exception):
    """Base of every error answered as JSON ``{"code", "message"}``."""

    status = 500
    code = "internal_error"
    message = "Internal error."

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class ValidationError(PayApiError):
    status, code, message = 422, "validation_error", "The request body is not valid."


class UnsupportedMediaType(PayApiError):
    status, code = 415, "unsupported_media_type"
    message = "The body must be JSON: send it with Content-Type: application/json."


class NotAuthenticated(PayApiError):
    status, code, message = 401, "not_authenticated", "A service token is required."


class TokenExpired(PayApiError):
    status, code, message = 401, "token_expired", "The token has expired."


class TokenInvalid(PayApiError):
    status, code, message = 401, "token_invalid", "The token is not valid."


class Forbidden(PayApiError):
    status, code, message = 403, "forbidden", "This service may not call this endpoint."


class PaymentNotFound(PayApiError):
    status, code, message = 404, "payment_not_found", "No such payment."


class RefundNotFound(PayApiError):
    status, code, message = 404, "refund_not_found", "No such refund."


class CustomerNotFound(PayApiError):
    status, code, message = 404, "customer_not_found", "No user has this Stripe Customer."


class PaymentConflict(PayApiError):
    status, code, message = 409, "payment_conflict", "The payment exists with other parameters."


class RefundConflict(PayApiError):
    status, code, message = 409, "refund_conflict", "The refund exists with other parameters."


class PaymentNotPayable(PayApiError):
    status, code, message = 409, "payment_not_payable", "This payment can no longer be paid."


class PaymentNotRefundable(PayApiError):
    status, code, message = 409, "payment_not_refundable", "Only a paid payment can be refunded."


class RefundExceedsRemaining(PayApiError):
    status, code = 409, "refund_exceeds_remaining"
    message = "The refund is larger than what is left of the payment."


class LinkInvalid(PayApiError):
    status, code = 403, "link_invalid"
    message = "This link is not valid. Use the latest link we emailed you."


class LinkExpired(PayApiError):
    status, code = 403, "link_expired"
    message = "This link has expired. Use the latest link we emailed you."


class NoSavedCard(PayApiError):
    status, code = 409, "no_saved_card"
    message = "The user has no saved card to charge; they must give one."


class SetupIntentInvalid(PayApiError):
    status, code, message = 409, "setup_intent_invalid", "The card was not saved; try again."


class SetupIntentLimit(PayApiError):
    status, code = 409, "setup_intent_limit"
    message = "Too many cards were tried for this payment."


class GatewayUnavailable(PayApiError):
    """Stripe did not answer (network, timeout, 5xx): the outcome of the call is unknown."""

    status, code = 503, "gateway_unavailable"
    message = "The payment gateway is not available; try again later."


class GatewayRejected(PayApiError):
    """Stripe refused the request itself (bad parameters, wrong state, authentication)."""

    status, code, message = 502, "gateway_error", "The payment gateway refused the request."

    def __init__(self, message: str | None = None, *, stripe_code: str | None = None) -> None:
        super().__init__(message)
        self.stripe_code = stripe_code


def register_error_handlers(app: Flask) -> None:
    """Every error leaves as JSON ``{"code", "message"}``."""

    @app.errorhandler(PayApiError)
    def _ours(error: PayApiError):
        headers = {}
        if error.status == 401:  # RFC 6750: the scheme, and whether the token was the problem
            invalid = error.code != "not_authenticated"
            headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' if invalid else "Bearer"
        return jsonify(error.to_body()), error.status, headers

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        code = {
            404: "not_found",
            405: "method_not_allowed",
            400: "bad_request",
            413: "payload_too_large",
            429: "rate_limited",
        }.get(error.code or 500, "http_error")
        return jsonify({"code": code, "message": error.description}), error.code

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        app.logger.exception("unhandled error")
        return jsonify({"code": "internal_error", "message": "Internal error."}), 500
