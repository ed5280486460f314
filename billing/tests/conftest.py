"""Fixtures of billing's tests: a fresh PostgreSQL database per run (migrated with the real
`alembic upgrade head`, dropped at the end), real Redis (db 15, keys under a per-run prefix), the
API in-process through httpx's ASGI transport, and a recording fake of pay_api's side over HTTP.

Every test uses fresh users and plans, so tests do not depend on each other.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import pytest_asyncio
from billing.config import Settings
from billing.main import create_app
from billing.worker.jobs import run_once
from billing_fakes import FakePayApi, FakePayApiServer
from sqlalchemy import text
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
from stack_env import postgres_server_url, redis_server_url  # noqa: E402 - one source of settings

USER_SECRET = "test-user-secret-0123456789-abcdefghij"
SERVICE_SECRET = "test-service-secret-0123456789-abcdefgh"
AUDIENCE = "cinema"

_server_url = make_url(f"{postgres_server_url('postgresql+asyncpg')}/postgres")
RUN_ID = uuid.uuid4().hex[:10]
TEST_DATABASE = f"billing_test_{RUN_ID}"
TEST_DATABASE_URL = _server_url.set(database=TEST_DATABASE).render_as_string(hide_password=False)
TEST_REDIS_URL = redis_server_url(15)  # db 15, keys under a per-run prefix
REDIS_PREFIX = f"billing_test_{RUN_ID}:"


def _admin_dsn() -> str:
    return _server_url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database_url() -> AsyncIterator[str]:
    admin = await asyncpg.connect(_admin_dsn())
    await admin.execute(f"CREATE DATABASE \"{TEST_DATABASE}\" TEMPLATE template0 ENCODING 'UTF8'")
    await admin.close()
    # The real migration command, as `make up` runs it.
    migrate = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        "-c",
        "billing/alembic.ini",
        "upgrade",
        "head",
        cwd=REPO_ROOT,
        env={**os.environ, "BILLING_DATABASE_URL": TEST_DATABASE_URL},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await migrate.communicate()
    assert migrate.returncode == 0, output.decode()
    yield TEST_DATABASE_URL
    admin = await asyncpg.connect(_admin_dsn())
    await admin.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)')
    await admin.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def fake_pay_api() -> AsyncIterator[FakePayApi]:
    fake = FakePayApi(secret=SERVICE_SECRET)
    server = FakePayApiServer(fake)
    await server.start()
    yield fake
    await server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MailServer:
    """The project's local mail server (scripts/mail_server.py), started for the run."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir  # <n>.eml: the bytes each message arrived as
        self.relay_port, self.http_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.log = open(data_dir / "mail.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(REPO_ROOT / "scripts" / "mail_server.py"),
                "--smtp-port",
                str(self.relay_port),
                "--http-port",
                str(self.http_port),
                "--data-dir",
                str(data_dir),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    async def wait_up(self) -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    if (await client.get(f"{self.url}/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("the mail server did not start")

    async def messages(self, to: str, after: int = 0) -> list[dict]:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"{self.url}/messages", params={"to": to, "after": after})
        assert answer.status_code == 200, answer.text
        return answer.json()["items"]

    def raw(self, number: int) -> bytes:
        """Message `number` as the server received it (after SMTP's dot-unstuffing)."""
        return (self.data_dir / f"{number}.eml").read_bytes()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def mail_server(tmp_path_factory) -> AsyncIterator[MailServer]:
    server = MailServer(tmp_path_factory.mktemp("mail"))
    try:
        await server.wait_up()
        yield server
    finally:
        server.stop()


def make_settings(database_url: str, pay_api_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "BILLING_DATABASE_URL": database_url,
        "REDIS_URL": TEST_REDIS_URL,
        "AUTH_JWT_SECRET": USER_SECRET,
        "AUTH_JWT_AUDIENCE": AUDIENCE,
        "SERVICE_JWT_SECRET": SERVICE_SECRET,
        "PAY_API_URL": pay_api_url,
        "PAY_API_PUBLIC_URL": "http://pay.public.test",
        "BILLING_REDIS_PREFIX": REDIS_PREFIX,
        "BILLING_RECONCILE_BASE_SECONDS": 1,
        "BILLING_RECONCILE_MAX_SECONDS": 8,
        "BILLING_PAY_API_TIMEOUT": 5,
        "BILLING_DB_POOL_SIZE": 10,
        "BILLING_DB_MAX_OVERFLOW": 15,
        "BILLING_SMTP_PORT": MAIL["relay_port"],
        "BILLING_ACCESS_DB_POOL_SIZE": 2,
        # Tests fire many requests of one user at once; test_billing_rate_limits sets its own.
        "BILLING_RATE_LIMIT_PER_USER": "100000/minute",
        "BILLING_RATE_LIMIT_PER_ADDRESS": "100000/minute",
        **overrides,
    }
    return Settings(**values)


# The session's mail server port, for every settings built in the run (a closed port before it).
MAIL = {"relay_port": 1}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def app(database_url: str, fake_pay_api: FakePayApi, mail_server: MailServer):
    MAIL["relay_port"] = mail_server.relay_port
    application = create_app(make_settings(database_url, fake_pay_api.url), configure_logs=False)
    # Access checks answer from memory once the invalidation channel is proven (billing.access.cache).
    assert await application.state.resources.access_cache.wait_trusted(10)
    yield application
    resources = application.state.resources
    async for key in resources.redis.scan_iter(match=f"{REDIS_PREFIX}*"):
        await resources.redis.delete(key)
    await resources.aclose()


@pytest.fixture(scope="session")
def resources(app):
    return app.state.resources


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as c:
        yield c


@pytest.fixture(autouse=True)
def _reset_fake(fake_pay_api: FakePayApi):
    fake_pay_api.mode = "ok"
    fake_pay_api.refund_status = "pending"
    fake_pay_api.cancel_outcome = "canceled"
    fake_pay_api.renewal_default = "succeeded"
    yield


# --- tokens ------------------------------------------------------------------------------------
def user_token(user_id: uuid.UUID | str, *, secret: str = USER_SECRET, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": str(user_id), "aud": AUDIENCE, "iat": now, "exp": now + 600, **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret, algorithm="HS256")


def service_token(
    issuer: str, *, audience: str = "billing", secret: str = SERVICE_SECRET, ttl: int = 300
) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "sub": issuer, "aud": audience, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def as_user(user_id: uuid.UUID | str) -> dict[str, str]:
    return bearer(user_token(user_id))


def as_service(issuer: str) -> dict[str, str]:
    return bearer(service_token(issuer))


# --- helpers driving the API as its peers would ------------------------------------------------
class Billing:
    """Thin helpers over the HTTP API and the database, for readable tests."""

    def __init__(self, client: httpx.AsyncClient, resources, fake: FakePayApi) -> None:
        self.client = client
        self.resources = resources
        self.fake = fake

    async def put_plan(self, *, plan_id: uuid.UUID | None = None, **fields: Any) -> uuid.UUID:
        plan_id = plan_id or uuid.uuid4()
        body = {
            "name": "Premium",
            "description": "All of it",
            "price_amount": 999,
            "currency": "usd",
            "period_unit": "month",
            "period_count": 1,
            "refund_window_days": 14,
            "active": True,
            "all_films": False,
            "film_ids": [],
            **fields,
        }
        response = await self.client.put(
            f"/internal/v1/plans/{plan_id}", json=body, headers=as_service("etl")
        )
        assert response.status_code == 200, response.text
        return plan_id

    async def buy(self, user_id: uuid.UUID, plan_id: uuid.UUID, **headers: str) -> httpx.Response:
        return await self.client.post(
            "/api/v1/subscriptions",
            json={"plan_id": str(plan_id)},
            headers={**as_user(user_id), **headers},
        )

    async def event(self, payment: dict, status: str, **fields: Any) -> httpx.Response:
        body = {
            "event_id": str(uuid.uuid4()),
            "object": "payment",
            "payment_id": payment["id"],
            "refund_id": None,
            "status": status,
            "amount": payment["amount"],
            "currency": payment["currency"],
            "amount_refunded": 0,
            "failure_code": None,
            "failure_message": None,
            "stripe_id": "pi_test",
            "occurred_at": "2026-01-01T00:00:00+00:00",
            **fields,
        }
        return await self.client.post(
            "/internal/v1/payment-events", json=body, headers=as_service("pay_api")
        )

    async def refund_event(self, refund: dict, status: str, **fields: Any) -> httpx.Response:
        return await self.event(
            {
                "id": refund["payment_id"],
                "amount": refund["amount"],
                "currency": refund["currency"],
            },
            status,
            object="refund",
            refund_id=refund["id"],
            stripe_id="re_test",
            **fields,
        )

    async def paid_subscription(self, user_id: uuid.UUID, plan_id: uuid.UUID) -> dict:
        """Buy and pay: returns the purchase answer (subscription + payment) after payment."""
        response = await self.buy(user_id, plan_id)
        assert response.status_code == 201, response.text
        purchase = response.json()
        paid = await self.event(purchase["payment"], "succeeded")
        assert paid.json() == {"applied": True}
        return purchase

    async def payment(self, user_id: uuid.UUID, payment_id: str) -> dict:
        response = await self.client.get(f"/api/v1/payments/{payment_id}", headers=as_user(user_id))
        assert response.status_code == 200, response.text
        return response.json()

    async def access(self, user_id: uuid.UUID, film_id: uuid.UUID) -> dict:
        response = await self.client.get(
            f"/api/v1/access/films/{film_id}", headers=as_user(user_id)
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.resources.engine.connect() as conn:
            return await conn.scalar(text(sql), params)

    async def count(self, table: str, where: str = "true", **params: Any) -> int:
        return int(await self.scalar(f"SELECT count(*) FROM {table} WHERE {where}", **params))

    async def table_counts(self) -> dict[str, int]:
        """Row counts of every table: 'nothing was written' is 'these did not change'."""
        tables = [
            "films",
            "plans",
            "plan_films",
            "subscriptions",
            "payments",
            "refunds",
            "ledger_entries",
            "idempotency_keys",
            "processed_events",
            "outbox",
        ]
        return {t: await self.count(t) for t in tables}

    async def work(self, *, now=None) -> dict[str, int]:
        """One pass of every worker job (as `python -m billing.worker --once` does); a job that
        raised (-1, logged and skipped by the worker) fails the test."""
        done = await run_once(self.resources, now=now)
        failed = [name for name, count in done.items() if count < 0]
        assert not failed, f"worker jobs raised: {failed}"
        return done


@pytest.fixture
def billing(client, resources, fake_pay_api) -> Billing:
    return Billing(client, resources, fake_pay_api)
