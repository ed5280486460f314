"""One exception tree for billing; each error maps to a JSON `{"code", "message"}` answer.

Foreign errors (asyncpg, httpx, jwt) are turned into these at the boundary that sees them.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class BillingError(Exception):
    """Base of every error billing answers with; `code` is stable and machine-readable."""

    status_code = 400
    code = "bad_request"
    message = "Bad request."

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        self.message = message or self.message
        self.details = details
        super().__init__(self.message)


# --- authentication and authorization (401/403) ---
class NotAuthenticated(BillingError):
    status_code, code, message = 401, "not_authenticated", "A bearer token is required."


class TokenExpired(BillingError):
    status_code, code, message = 401, "token_expired", "The token has expired."


class TokenInvalid(BillingError):
    status_code, code, message = 401, "token_invalid", "The token is not valid here."


class Forbidden(BillingError):
    status_code, code, message = 403, "forbidden", "This caller may not use this endpoint."


# --- not found (404); another user's object is not found either ---
class NotFound(BillingError):
    status_code, code, message = 404, "not_found", "Not found."


class PlanNotFound(NotFound):
    code, message = "plan_not_found", "No such plan."


class SubscriptionNotFound(NotFound):
    code, message = "subscription_not_found", "No such subscription."


class PaymentNotFound(NotFound):
    code, message = "payment_not_found", "No such payment."


class RefundNotFound(NotFound):
    code, message = "refund_not_found", "No such refund."


class ClockOff(NotFound):
    """The test clock is off (production): its endpoints do not exist."""

    code, message = "clock_not_found", "There is no movable clock here."


class ClockBackwards(NotFound):
    code, message = "clock_backwards", "The clock only moves forward."


class PromoCodeNotFound(NotFound):
    code, message = "promo_code_not_found", "No such promo code."


# --- conflicts with the current state (409) ---
class Conflict(BillingError):
    status_code, code, message = 409, "conflict", "Conflicts with the current state."


class PlanInactive(Conflict):
    code, message = "plan_inactive", "This plan can no longer be bought."


class SubscriptionExists(Conflict):
    code, message = "subscription_exists", "You already hold this plan."


class SubscriptionNotCancelable(Conflict):
    code, message = "subscription_not_cancelable", "This subscription cannot be canceled."


class SubscriptionNotResumable(Conflict):
    code, message = "subscription_not_resumable", "This subscription cannot be resumed."


class SubscriptionEnded(Conflict):
    code, message = "subscription_ended", "This subscription has already ended."


class NoRenewalToRetry(Conflict):
    code, message = "no_renewal_to_retry", "This subscription has no renewal waiting for payment."


class PaymentNotRefundable(Conflict):
    code, message = "payment_not_refundable", "Only a succeeded payment can be refunded."


class PaymentAlreadyRefunded(Conflict):
    code, message = "payment_already_refunded", "This payment has already been refunded."


class RefundExceedsRemaining(Conflict):
    code, message = "refund_exceeds_remaining", "The refund exceeds what is left of the payment."


class RefundWindowPassed(Conflict):
    code, message = "refund_window_passed", "The refund window of this plan has passed."


class TransactionConflict(Conflict):
    """A deadlock or serialization failure (SQLSTATE class 40): nothing changed; send it again."""

    code, message = "transaction_conflict", "A concurrent change got in the way; try again."


# --- well-formed but unacceptable input (422) ---
class Unprocessable(BillingError):
    status_code, code, message = 422, "validation_error", "The request is not valid."


class IdempotencyKeyReused(Unprocessable):
    code = "idempotency_key_reused"
    message = "This Idempotency-Key was used with other parameters."


class EventMismatch(Unprocessable):
    code, message = "event_mismatch", "The event's amount or currency does not match."


# A promo code the user may not use now (GET /api/v1/plans/{id}/price, POST /api/v1/subscriptions).
class PromoCodeRefused(Unprocessable):
    code, message = "promo_code_refused", "This promo code cannot be used."


class PromoCodeUnknown(PromoCodeRefused):
    code, message = "promo_code_unknown", "There is no such promo code."


class PromoCodeNotYetValid(PromoCodeRefused):
    code, message = "promo_code_not_yet_valid", "This promo code is not valid yet."


class PromoCodeExpired(PromoCodeRefused):
    code, message = "promo_code_expired", "This promo code has expired."


class PromoCodeExhausted(PromoCodeRefused):
    code, message = "promo_code_exhausted", "This promo code has been used up."


class PromoCodeNotForPlan(PromoCodeRefused):
    code, message = "promo_code_not_for_plan", "This promo code does not apply to this plan."


class PromoCodeFirstPurchaseOnly(PromoCodeRefused):
    code, message = (
        "promo_code_first_purchase_only",
        "This promo code is for a first purchase only.",
    )


class PromoCodeAlreadyUsed(PromoCodeRefused):
    code, message = "promo_code_already_used", "You have already used this promo code."


class AmountBelowMinimum(Unprocessable):
    code = "amount_below_minimum"
    message = "The price after the discount is below the smallest amount a card can be charged."


class InvalidValue(Unprocessable):
    """A value PostgreSQL refused (out of range, not valid text) that validation let through."""

    message = "A value is out of range or invalid."


# --- ours and our peers (5xx) ---
class ServerError(BillingError):
    status_code, code, message = 500, "internal_error", "Something went wrong on our side."


class GatewayUnavailable(BillingError):
    status_code, code = 503, "gateway_unavailable"
    message = "The payment gateway is unavailable; try again shortly."


class GatewayError(BillingError):
    status_code, code = 502, "gateway_error"
    message = "The payment gateway refused the request."


def error_for(exc: Exception) -> BillingError:
    """The answer an exception met inside one unit of work deserves, as the app maps it (a
    batch reports it per item; see `install_error_handlers`). A lost connection is not a unit's
    error: callers let it end the whole request (503)."""
    if isinstance(exc, BillingError):
        return exc
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith("40"):
            return TransactionConflict()
        if isinstance(exc, DataError) or (isinstance(sqlstate, str) and sqlstate.startswith("22")):
            return InvalidValue()
    return ServerError()


def connection_lost(exc: BaseException) -> bool:
    """The database connection was cut: the transaction is gone, nothing of it survives."""
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, InterfaceError)
    )


def error_response(status_code: int, code: str, message: str, details: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    headers = None
    if status_code == 401:  # RFC 6750: say which scheme, and whether the token was the problem
        scheme = "Bearer" if code == "not_authenticated" else 'Bearer error="invalid_token"'
        headers = {"WWW-Authenticate": scheme}
    return JSONResponse(body, status_code=status_code, headers=headers)


def _json_content_type(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media_type in ("", "application/json") or media_type.endswith("+json")


_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    415: "unsupported_media_type",
}


def install_error_handlers(app: FastAPI) -> None:
    """Map our errors, FastAPI's validation errors and stray HTTP errors to one JSON shape."""

    @app.exception_handler(BillingError)
    async def _billing_error(_request: Request, exc: BillingError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        if not _json_content_type(request) and any(
            err.get("loc", ())[:1] == ("body",) for err in exc.errors()
        ):
            return error_response(
                415,
                "unsupported_media_type",
                "The body must be JSON: send it with Content-Type: application/json.",
            )
        details = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
            for err in exc.errors()
        ]
        return error_response(422, "validation_error", "The request is not valid.", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(DBAPIError)
    async def _database_error(_request: Request, exc: DBAPIError) -> JSONResponse:
        if connection_lost(exc):
            # The connection was cut mid-request: the transaction is gone, nothing half-done.
            logger.warning("database connection lost during a request: %s", exc.orig)
            return error_response(
                503, "database_unavailable", "The database is not reachable; try again."
            )
        if isinstance(exc, DataError):
            # A value PostgreSQL refuses (out of range, not valid text) that validation let
            # through: the transaction rolled back, nothing changed — the caller's input.
            logger.warning("the database refused a value: %s", exc.orig)
            return error_response(422, "validation_error", "A value is out of range or invalid.")
        logger.exception("database error", exc_info=exc)
        return error_response(500, "internal_error", "Something went wrong on our side.")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "Something went wrong on our side.")
