"""A small recording stand-in for pay_api's internal API (docs/contracts.md), served over real HTTP.

Only pay_api's side is faked: billing talks to it through its real HTTP client. Tests steer what
"Stripe" did (`set_payment`, `refund_status`, `mode`) and read what billing asked (`calls`).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Call:
    method: str
    path: str
    body: Any
    claims: dict[str, Any]
    request_id: str | None


@dataclass
class FakePayApi:
    secret: str
    # "ok": answer per contract; "down": 503 to everything; "refuse_refunds": 409 on refunds.
    mode: str = "ok"
    # Status a new refund gets: "pending" (the reconciler/events finish it) or "succeeded".
    refund_status: str = "pending"
    # What a cancel answers when the payment is pending: "canceled" or "succeeded" (charged first).
    cancel_outcome: str = "canceled"
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Stripe Customer id -> user id, as pay_api's customers table holds them.
    customers: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    url: str = ""
    # Renewals: what the next off-session attempt of a payment meets ("succeeded", a decline
    # code such as "card_declined"/"lost_card", "authentication_required", "processing",
    # "no_saved_card", "gateway_unavailable"); `renewal_default` for payments not named. The attempts pay_api confirmed.
    renewal_default: str = "succeeded"
    renewal_outcomes: dict[str, str] = field(default_factory=dict)
    # The attempt is made (the card charged or declined), but its answer never reaches billing.
    lose_renewal_answers: bool = False
    confirmed_attempts: dict[str, list[int]] = field(default_factory=dict)

    def calls_to(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == path]

    def set_payment(self, payment_id: str, status: str, **extra: Any) -> None:
        self.payments[str(payment_id)].update(status=status, **extra)

    # --- the ASGI app -----------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/internal/v1/payments", self._create_payment, methods=["POST"]),
                Route("/internal/v1/payments/{pid}", self._get_payment, methods=["GET"]),
                Route("/internal/v1/payments/{pid}/cancel", self._cancel, methods=["POST"]),
                Route(
                    "/internal/v1/payments/{pid}/charge-off-session",
                    self._charge_off_session,
                    methods=["POST"],
                ),
                Route("/internal/v1/renewals/charges", self._charge_renewals, methods=["POST"]),
                Route("/internal/v1/refunds", self._create_refund, methods=["POST"]),
                Route("/internal/v1/refunds/{rid}", self._get_refund, methods=["GET"]),
                Route("/internal/v1/customers/{cid}", self._get_customer, methods=["GET"]),
            ]
        )

    async def _record(self, request: Request) -> Any:
        body = await request.json() if request.method == "POST" and await request.body() else None
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        claims = jwt.decode(token, self.secret, algorithms=["HS256"], audience="pay_api")
        self.calls.append(
            Call(
                request.method, request.url.path, body, claims, request.headers.get("x-request-id")
            )
        )
        return body

    def _payment_view(self, payment: dict[str, Any]) -> dict[str, Any]:
        return {
            **payment,
            "payment_url": f"http://pay.test/pay/{payment['payment_id']}",
            "stripe_payment_intent_id": "pi_" + payment["payment_id"][:8],
            "failure_code": payment.get("failure_code"),
            "failure_message": payment.get("failure_message"),
        }

    async def _create_payment(self, request: Request) -> JSONResponse:
        body = await self._record(request)
        if self.mode == "down":
            return JSONResponse({"code": "unavailable", "message": "down"}, status_code=503)
        existing = self.payments.get(body["payment_id"])
        if existing:
            return JSONResponse(self._payment_view(existing), status_code=200)
        payment = {
            "payment_id": body["payment_id"],
            "status": "pending",
            "amount": body["amount"],
            "currency": body["currency"],
            "amount_refunded": 0,
        }
        self.payments[body["payment_id"]] = payment
        return JSONResponse(self._payment_view(payment), status_code=201)

    async def _get_payment(self, request: Request) -> JSONResponse:
        await self._record(request)
        if self.mode == "down":
            return JSONResponse({"code": "unavailable", "message": "down"}, status_code=503)
        payment = self.payments.get(request.path_params["pid"])
        if payment is None:
            return JSONResponse({"code": "payment_not_found", "message": "?"}, status_code=404)
        return JSONResponse(self._payment_view(payment))

    async def _cancel(self, request: Request) -> JSONResponse:
        await self._record(request)
        if self.mode == "down":
            return JSONResponse({"code": "unavailable", "message": "down"}, status_code=503)
        payment = self.payments.get(request.path_params["pid"])
        if payment is None:
            return JSONResponse({"code": "payment_not_found", "message": "?"}, status_code=404)
        if payment["status"] == "pending":
            payment["status"] = self.cancel_outcome
        return JSONResponse(self._payment_view(payment))

    def charges_sent(self, payment_id: Any) -> list[int]:
        """The attempt numbers billing sent for a renewal payment (batches and single calls)."""
        sent = []
        for call in self.calls:
            if call.path == "/internal/v1/renewals/charges":
                sent += [
                    c["attempt"] for c in call.body["charges"] if c["payment_id"] == str(payment_id)
                ]
            elif call.path == f"/internal/v1/payments/{payment_id}/charge-off-session":
                sent.append(call.body["attempt"])
        return sent

    def _off_session(self, pid: str, attempt: int) -> tuple[int, dict[str, Any]]:
        """As pay_api: each attempt number confirmed once; a final payment is left alone."""
        payment = self.payments.get(pid)
        if payment is None:
            return 404, {"code": "payment_not_found", "message": "?"}
        outcome = self.renewal_outcomes.get(pid, self.renewal_default)
        if outcome == "no_saved_card":
            return 409, {"code": "no_saved_card", "message": "none"}
        if outcome == "gateway_unavailable":  # Stripe did not answer: nothing known, nothing done
            return 503, {"code": "gateway_unavailable", "message": "Stripe did not answer"}
        confirmed = self.confirmed_attempts.setdefault(pid, [])
        if attempt not in confirmed and payment["status"] == "pending":
            confirmed.append(attempt)
            if outcome in ("succeeded", "processing"):
                payment.update(status=outcome, failure_code=None, failure_message=None)
            else:
                payment.update(
                    status="pending", failure_code=outcome, failure_message=f"Declined: {outcome}."
                )
        return 200, self._payment_view(payment)

    async def _charge_off_session(self, request: Request) -> JSONResponse:
        body = await self._record(request)
        if self.mode == "down":
            return JSONResponse({"code": "unavailable", "message": "down"}, status_code=503)
        status, answer = self._off_session(request.path_params["pid"], body["attempt"])
        if self.lose_renewal_answers and status == 200:
            return JSONResponse({"code": "unavailable", "message": "lost"}, status_code=503)
        return JSONResponse(answer, status_code=status)

    async def _charge_renewals(self, request: Request) -> JSONResponse:
        """As pay_api's batch: each charge registered if new, then charged as its attempt."""
        body = await self._record(request)
        if self.mode == "down":
            return JSONResponse({"code": "unavailable", "message": "down"}, status_code=503)
        results = []
        for charge in body["charges"]:
            pid = charge["payment_id"]
            self.payments.setdefault(
                pid,
                {
                    "payment_id": pid,
                    "status": "pending",
                    "amount": charge["amount"],
                    "currency": charge["currency"],
                    "amount_refunded": 0,
                },
            )
            status, answer = self._off_session(pid, charge["attempt"])
            if status == 200:
                results.append({"payment_id": pid, "payment": answer})
            else:
                results.append({"payment_id": pid, "error": {"status": status, **answer}})
        if self.lose_renewal_answers:
            return JSONResponse({"code": "unavailable", "message": "lost"}, status_code=503)
        return JSONResponse({"results": results})

    async def _create_refund(self, request: Request) -> JSONResponse:
        body = await self._record(request)
        if self.mode == "down":
            return JSONResponse({"code": "unavailable", "message": "down"}, status_code=503)
        if self.mode == "refuse_refunds":
            return JSONResponse(
                {"code": "refund_exceeds_remaining", "message": "less left"}, status_code=409
            )
        existing = self.refunds.get(body["refund_id"])
        if existing:
            return JSONResponse(existing, status_code=200)
        refund = {
            "refund_id": body["refund_id"],
            "payment_id": body["payment_id"],
            "status": self.refund_status,
            "amount": body["amount"],
            "stripe_refund_id": "re_" + body["refund_id"][:8],
        }
        self.refunds[body["refund_id"]] = refund
        return JSONResponse(refund, status_code=201)

    async def _get_refund(self, request: Request) -> JSONResponse:
        await self._record(request)
        if self.mode == "down":
            return JSONResponse({"code": "unavailable", "message": "down"}, status_code=503)
        refund = self.refunds.get(request.path_params["rid"])
        if refund is None:
            return JSONResponse({"code": "refund_not_found", "message": "?"}, status_code=404)
        return JSONResponse(refund)

    async def _get_customer(self, request: Request) -> JSONResponse:
        await self._record(request)
        if self.mode == "down":
            return JSONResponse({"code": "unavailable", "message": "down"}, status_code=503)
        cid = request.path_params["cid"]
        if cid not in self.customers:
            return JSONResponse({"code": "customer_not_found", "message": "?"}, status_code=404)
        return JSONResponse({"stripe_customer_id": cid, "user_id": self.customers[cid]})


class FakePayApiServer:
    """Runs a FakePayApi with uvicorn on a free local port, in the test's event loop."""

    def __init__(self, fake: FakePayApi) -> None:
        self.fake = fake
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        fake.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(fake.app(), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:  # noqa: ASYNC110 (uvicorn exposes a flag only)
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task:
            await self._task
