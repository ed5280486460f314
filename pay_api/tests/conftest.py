"""Fixtures: a fresh PostgreSQL database (alembic-migrated, dropped at the end), a real localstripe
started through scripts/localstripe_server.py, and a recording stand-in for billing's endpoint."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest
from alembic import command
from alembic.config import Config
from pay_api.config import Settings

from pay_api import create_app

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from stack_env import postgres_server_url  # noqa: E402 - the stack's settings, one source

ADMIN_DSN = f"{postgres_server_url()}/postgres"
SERVICE_SECRET = "test-service-secret-0123456789abcdef"
WEBHOOK_SECRET = "whsec_test_secret"
RUN_ID = uuid.uuid4().hex[:10]
PUBLISHABLE_KEY = "pk_test_offline"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, *, timeout: float = 15.0, pause: float = 0.05, what: str = "condition"):
    """Poll until `condition()` is truthy (a readiness wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(pause)
    raise AssertionError(f"gave up waiting for {what}")


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    name = f"pay_api_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
    url = f"{postgres_server_url('postgresql+psycopg')}/{name}"
    config = Config(str(REPO / "pay_api" / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
    yield url
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- localstripe ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def localstripe_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """(base URL, data dir) of a localstripe started through the project's wrapper."""
    port = free_port()
    data_dir = tmp_path_factory.mktemp("localstripe")
    log_file = open(data_dir / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts" / "localstripe_server.py"),
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/js.stripe.com/v3/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, what="localstripe to start")
        yield base, data_dir
    finally:
        process.terminate()
        process.wait(timeout=10)
        log_file.close()


@pytest.fixture(scope="session")
def localstripe(localstripe_server) -> str:
    return localstripe_server[0]


# --- billing's side of the outbox -------------------------------------------------------------


class BillingRecorder:
    """A tiny HTTP server standing in for billing's event endpoints: one event
    (`/internal/v1/payment-events`) or a batch of 1-100 (`/internal/v1/payment-events/batch`,
    refused with 422 otherwise, as billing does); records every event it receives.

    `status`: the HTTP status of every answer (other than 200: billing's error JSON for the whole
    POST); `answer(event)`: that event's result in a batch instead of `{"event_id": ...,
    "applied": True}` — a dict is merged over `{"event_id": ...}`, None leaves it out; `raw`: a
    body answered instead of the results; `max_body_bytes`: 413 past it, as billing's guard."""

    def __init__(self) -> None:
        self.requests: list[dict] = []  # one per event received
        self.posts: list[dict] = []  # one per POST
        self.status = 200
        self.answer = None
        self.raw: bytes | None = None
        self.max_body_bytes: int | None = None  # billing's BILLING_MAX_BODY_BYTES: 413 past it
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                if recorder.max_body_bytes is not None and length > recorder.max_body_bytes:
                    self.rfile.read(length)
                    with recorder.lock:
                        recorder.posts.append({"path": self.path, "bytes": length, "answered": 413})
                    payload = b'{"code": "payload_too_large", "message": "Too large."}'
                    self.send_response(413)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                body = json.loads(self.rfile.read(length) or b"{}")
                with recorder.lock:
                    status, payload = recorder._answer(self.path, dict(self.headers), body, length)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _answer(self, path: str, headers: dict, body, size: int) -> tuple[int, bytes]:
        status = self.status
        self.posts.append(
            {"path": path, "headers": headers, "json": body, "bytes": size, "answered": status}
        )
        if not path.endswith("/batch"):
            self.requests.append(
                {"path": path, "headers": headers, "json": body, "answered": status}
            )
            return status, json.dumps({"applied": status == 200}).encode()
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not 1 <= len(events) <= 100:
            self.posts[-1]["answered"] = 422
            return 422, b'{"code": "validation_error", "message": "1 to 100 events."}'
        results = []
        for event in events:
            result = {"event_id": event["event_id"], "applied": True}
            if self.answer is not None:
                custom = self.answer(event)
                result = None if custom is None else {"event_id": event["event_id"], **custom}
            self.requests.append(
                {
                    "path": path,
                    "headers": headers,
                    "json": event,
                    "answered": status,
                    "result": result,
                }
            )
            if result is not None:
                results.append(result)
        if status != 200:
            return status, json.dumps({"code": "internal_error", "message": "Down."}).encode()
        return status, self.raw if self.raw is not None else json.dumps(
            {"results": results}
        ).encode()

    def events_for(self, payment_id) -> list[dict]:
        with self.lock:
            return [
                r["json"] for r in self.requests if r["json"].get("payment_id") == str(payment_id)
            ]

    def requests_for(self, payment_id) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["json"].get("payment_id") == str(payment_id)]


@pytest.fixture(scope="session")
def billing_recorder() -> Iterator[BillingRecorder]:
    recorder = BillingRecorder()
    yield recorder
    recorder.server.shutdown()


@pytest.fixture
def billing(billing_recorder) -> BillingRecorder:
    billing_recorder.status = 200
    billing_recorder.answer = None
    billing_recorder.raw = None
    billing_recorder.max_body_bytes = None
    return billing_recorder


# --- the app --------------------------------------------------------------------------------


def make_settings(database_url: str, localstripe: str, billing_url: str, **overrides) -> Settings:
    values = {
        "PAY_API_DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": "sk_test_offline",
        "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SERVICE_JWT_SECRET": SERVICE_SECRET,
        "STRIPE_API_BASE": localstripe,
        "STRIPE_JS_URL": f"{localstripe}/js.stripe.com/v3/",
        "STRIPE_REGISTER_WEBHOOK": False,
        "BILLING_URL": billing_url,
        "PAY_API_PUBLIC_URL": "http://pay.test",
        "PAY_API_OUTBOX_IMMEDIATE": False,
        "PAY_API_STRIPE_TIMEOUT": 10,
        "PAY_API_OUTBOX_TIMEOUT": 2,
        # Real Redis for the rate limits' counters, this run's own keys; the suite fires many page
        # calls from one address (test_rate_limits sets low limits of its own).
        "REDIS_URL": os.environ.get("PAY_API_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        "PAY_API_RATE_LIMIT_PREFIX": f"pay_api_test_{RUN_ID}",
        "PAY_API_RATE_LIMIT_PER_ADDRESS": "100000/minute",
        "PAY_API_RATE_LIMIT_PER_PAYMENT": "100000/minute",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def settings(database_url, localstripe, billing_recorder) -> Settings:
    return make_settings(database_url, localstripe, billing_recorder.url)


@pytest.fixture(scope="session")
def app(settings):
    application = create_app(settings)
    application.config["TESTING"] = True
    yield application
    application.extensions["pay_api.db"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db(app):
    return app.extensions["pay_api.db"]


# --- helpers ----------------------------------------------------------------------------------


def service_token(
    *, iss: str = "billing", aud: str = "pay_api", secret: str = SERVICE_SECRET, ttl: int = 300
) -> str:
    now = int(time.time())
    return jwt.encode({"iss": iss, "aud": aud, "iat": now, "exp": now + ttl}, secret, "HS256")


def auth(**kwargs) -> dict[str, str]:
    return {"Authorization": f"Bearer {service_token(**kwargs)}"}


class Api:
    """What billing and the browser do, spelled once."""

    def __init__(self, client, localstripe: str) -> None:
        self.client = client
        self.localstripe = localstripe

    def create_payment(
        self,
        *,
        amount=1299,
        currency="usd",
        user_id=None,
        payment_id=None,
        description="Premium\nAll films, HD, cancel anytime",
        return_url="http://cinema.test/account",
        **price_shown,
    ):
        body = {
            "payment_id": str(payment_id or uuid.uuid4()),
            "user_id": str(user_id or uuid.uuid4()),
            "amount": amount,
            "currency": currency,
            "description": description,
            "return_url": return_url,
            **price_shown,
        }
        response = self.client.post("/internal/v1/payments", json=body, headers=auth())
        assert response.status_code in (200, 201), response.json
        return response.json

    def get_payment(self, payment_id, refresh=False):
        url = f"/internal/v1/payments/{payment_id}" + ("?refresh=1" if refresh else "")
        response = self.client.get(url, headers=auth())
        assert response.status_code == 200, response.json
        return response.json

    def save_card(
        self, payment_id, number: str, *, complete_3ds: bool = True, setup_url: str | None = None
    ) -> str:
        """The page's /setup-intent (`setup_url`: another page's), then what Stripe.js's
        confirmCardSetup sends; seti id."""
        response = self.client.post(setup_url or f"/pay/{payment_id}/setup-intent", json={})
        assert response.status_code == 200, response.json
        secret = response.json["client_secret"]
        assert response.json["publishable_key"] == PUBLISHABLE_KEY
        seti = secret.split("_secret_")[0]
        url = f"{self.localstripe}/v1/setup_intents/{seti}/confirm"
        answer = httpx.post(
            url,
            json={
                "key": PUBLISHABLE_KEY,
                "use_stripe_sdk": True,
                "client_secret": secret,
                "payment_method_data": {
                    "type": "card",
                    "card": {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"},
                },
            },
        ).json()
        if answer.get("status") == "requires_action" and complete_3ds:
            # the mock's «Complete authentication» button
            answer = httpx.post(
                url, json={"key": PUBLISHABLE_KEY, "use_stripe_sdk": True, "client_secret": secret}
            ).json()
        assert answer.get("status") == "succeeded", answer
        return seti

    def charge(self, payment_id, seti: str):
        response = self.client.post(f"/pay/{payment_id}/charge", json={"setup_intent_id": seti})
        return response

    def pay(self, payment_id, number: str = "4242424242424242") -> dict:
        response = self.charge(payment_id, self.save_card(payment_id, number))
        assert response.status_code == 200, response.json
        return response.json

    def authenticate(self, client_secret: str, *, success: bool) -> dict:
        """What localstripe's confirmCardPayment mock does after the dialog."""
        intent = client_secret.split("_secret_")[0]
        return httpx.post(
            f"{self.localstripe}/v1/payment_intents/{intent}/_authenticate?success={str(success).lower()}",
            json={"key": PUBLISHABLE_KEY, "client_secret": client_secret},
        ).json()

    def sync(self, payment_id) -> dict:
        response = self.client.post(f"/pay/{payment_id}/sync", json={})
        assert response.status_code == 200, response.json
        return response.json

    def stripe_charges(self, intent_id: str) -> list[dict]:
        """Every charge localstripe holds for this PaymentIntent."""
        charges, after = [], None
        while True:
            params = {"limit": 100, **({"starting_after": after} if after else {})}
            page = httpx.get(
                f"{self.localstripe}/v1/charges", params=params, auth=("sk_test_offline", "")
            ).json()
            charges += page["data"]
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        return [c for c in charges if c.get("payment_intent") == intent_id]

    def stripe_refunds(self, intent_id: str) -> list[dict]:
        return httpx.get(
            f"{self.localstripe}/v1/refunds",
            params={"payment_intent": intent_id, "limit": 100},
            auth=("sk_test_offline", ""),
        ).json()["data"]


@pytest.fixture
def api(client, localstripe) -> Api:
    return Api(client, localstripe)


# --- Stripe on the wire: real sockets that misbehave (raw_server.py) ----------------------------

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def stripe_wire(monkeypatch):
    """The machine's proxy settings kept out of a test of the Stripe client; quick SDK retries."""
    import stripe

    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setattr(stripe.HTTPClient, "_sleep_time_seconds", lambda self, retries: 0.01)


@pytest.fixture
def servers():
    """Start a `RawServer` with the given acts; all are closed after the test."""
    from .raw_server import RawServer

    started: list[RawServer] = []

    def start(*acts, **options) -> RawServer:
        started.append(RawServer(*acts, **options))
        return started[-1]

    yield start
    for server in started:
        server.close()
