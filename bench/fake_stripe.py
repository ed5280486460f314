"""A fast stand-in for Stripe's API, for bench/renewals.py only (a bench fixture, not the product).

    .venv/bin/python bench/fake_stripe.py --port 26430

It answers the requests pay_api makes for an off-session renewal exactly where Stripe takes them,
with Stripe-shaped JSON, in constant time per request (dicts in memory; localstripe slows down
as it grows, which would measure localstripe rather than us):

    POST /v1/customers                            a Customer
    POST /v1/payment_intents                      an unconfirmed PaymentIntent (customer, card,
                                                  metadata.payment_id)
    POST /v1/payment_intents/{id}/confirm         succeeded, with a charge (off_session or not)
    GET  /v1/payment_intents/{id}                 the intent (`expand[]=latest_charge`: the charge)
    POST /v1/payment_intents/{id}/cancel          canceled (unless it succeeded)

Every POST honours `Idempotency-Key` as Stripe does (the same key answers the first answer again).
Anything else answers Stripe's 404 `resource_missing`. For the bench it also serves

    GET  /_bench/stats    requests per wall-clock second (all, and by endpoint), confirmations
                          that charged, per payment: how many intents and charges each got

One process, uvloop and httptools (what uvicorn uses), HTTP/1.1 keep-alive as the SDK uses it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import time
from collections import Counter, defaultdict
from urllib.parse import parse_qsl, urlsplit

import httptools
import uvloop

JSON = b"application/json"


class Stripe:
    """The objects and the counts; every operation is a few dict lookups."""

    def __init__(self) -> None:
        self.intents: dict[str, dict] = {}
        self.charges: dict[str, dict] = {}
        self.replies: dict[str, tuple[int, bytes]] = {}  # Idempotency-Key -> the first answer
        self.per_second: Counter[int] = Counter()
        self.per_second_by_kind: dict[str, Counter[int]] = defaultdict(Counter)
        self.intents_per_payment: Counter[str] = Counter()
        self.charges_per_payment: Counter[str] = Counter()
        self.requests = 0
        self.times: list[float] = []  # of every Stripe request (the cap's sliding windows)

    def handle(self, method: str, target: str, body: bytes, key: str | None) -> tuple[int, bytes]:
        url = urlsplit(target)
        if url.path == "/_bench/stats":
            return 200, json.dumps(self.stats()).encode()
        self.requests += 1
        now = time.time()
        self.times.append(now)
        second = int(now)
        self.per_second[second] += 1
        parts = url.path.strip("/").split("/")
        kind = "/".join(p if not p.startswith(("pi_", "cus_")) else "{id}" for p in parts)
        self.per_second_by_kind[f"{method} {kind}"][second] += 1
        if method == "POST" and key is not None and key in self.replies:
            return self.replies[key]
        params = dict(parse_qsl(body.decode() if method == "POST" else url.query))
        answer = self.route(method, parts, params)
        if method == "POST" and key is not None and answer[0] < 500:
            self.replies[key] = answer
        return answer

    def route(self, method: str, parts: list[str], params: dict[str, str]) -> tuple[int, bytes]:
        if parts[:1] != ["v1"]:
            return missing("")
        rest = parts[1:]
        if method == "POST" and rest == ["customers"]:
            return ok({"id": "cus_" + secrets.token_hex(12), "object": "customer",
                       "metadata": metadata(params), "livemode": False})  # fmt: skip
        if rest[:1] != ["payment_intents"]:
            return missing("/".join(rest))
        if method == "POST" and len(rest) == 1:
            return ok(self.create_intent(params))
        intent = self.intents.get(rest[1]) if len(rest) > 1 else None
        if intent is None:
            return missing(rest[1] if len(rest) > 1 else "")
        if method == "GET" and len(rest) == 2:
            return ok(self.view(intent, expand="latest_charge" in params.values()))
        if method == "POST" and rest[2:] == ["confirm"]:
            return ok(self.confirm(intent, params))
        if method == "POST" and rest[2:] == ["cancel"]:
            if intent["status"] != "succeeded":
                intent["status"] = "canceled"
                intent["cancellation_reason"] = "requested_by_customer"
            return ok(self.view(intent))
        return missing("/".join(rest))

    def create_intent(self, params: dict[str, str]) -> dict:
        intent_id = "pi_" + secrets.token_hex(12)
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": int(params["amount"]),
            "currency": params["currency"],
            "customer": params.get("customer"),
            "payment_method": params.get("payment_method"),
            "payment_method_types": ["card"],
            "metadata": metadata(params),
            "description": params.get("description"),
            "status": "requires_confirmation"
            if params.get("payment_method")
            else "requires_payment_method",
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}",
            "last_payment_error": None,
            "latest_charge": None,
            "cancellation_reason": None,
            "livemode": False,
            "created": int(time.time()),
        }
        self.intents[intent_id] = intent
        self.intents_per_payment[intent["metadata"].get("payment_id", "")] += 1
        return intent

    def confirm(self, intent: dict, params: dict[str, str]) -> dict:
        if intent["status"] in ("succeeded", "canceled"):
            return self.view(intent)  # Stripe would answer 400; pay_api then retrieves it anyway
        intent["payment_method"] = params.get("payment_method") or intent["payment_method"]
        charge_id = "ch_" + secrets.token_hex(12)
        self.charges[charge_id] = {
            "id": charge_id,
            "object": "charge",
            "amount": intent["amount"],
            "amount_refunded": 0,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "status": "succeeded",
            "paid": True,
            "refunded": False,
        }
        intent["status"] = "succeeded"
        intent["latest_charge"] = charge_id
        self.charges_per_payment[intent["metadata"].get("payment_id", "")] += 1
        return self.view(intent)

    def view(self, intent: dict, *, expand: bool = False) -> dict:
        if expand and intent["latest_charge"]:
            return {**intent, "latest_charge": self.charges[intent["latest_charge"]]}
        return intent

    def stats(self) -> dict:
        return {
            "requests": self.requests,
            "times": self.times,
            "per_second": {str(k): v for k, v in sorted(self.per_second.items())},
            "per_second_by_kind": {
                kind: {str(k): v for k, v in sorted(counts.items())}
                for kind, counts in self.per_second_by_kind.items()
            },
            "intents": len(self.intents),
            "charges": len(self.charges),
            "payments_charged": len(self.charges_per_payment),
            "payments_charged_twice": sum(1 for n in self.charges_per_payment.values() if n > 1),
            "payments_with_two_intents": sum(1 for n in self.intents_per_payment.values() if n > 1),
        }


def metadata(params: dict[str, str]) -> dict[str, str]:
    return {k[9:-1]: v for k, v in params.items() if k.startswith("metadata[")}


def ok(obj: dict) -> tuple[int, bytes]:
    return 200, json.dumps(obj).encode()


def missing(what: str) -> tuple[int, bytes]:
    error = {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "message": f"No such object: '{what}'",
    }
    return 404, json.dumps({"error": error}).encode()


REASONS = {200: b"OK", 404: b"Not Found"}


class Connection(asyncio.Protocol):
    def __init__(self, stripe: Stripe) -> None:
        self.stripe = stripe
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.key: str | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.body, self.key = b"", [], None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"idempotency-key":
            self.key = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        status, payload = self.stripe.handle(
            method, self.url.decode(), b"".join(self.body), self.key
        )
        head = (
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"Request-Id: req_bench\r\n\r\n"
            % (status, REASONS.get(status, b"Error"), JSON, len(payload))
        )
        self.transport.write(head + payload)
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve(port: int) -> None:
    stripe = Stripe()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(stripe), "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
