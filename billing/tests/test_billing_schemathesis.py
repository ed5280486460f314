"""Schemathesis over billing's own OpenAPI: every operation, valid and invalid inputs, with the
token each caller really has (a user's on /api/v1, the right service's on /internal/v1).
Whatever comes in, billing answers something other than a 5xx, and every error is JSON with a
stable `code`.

billing runs under uvicorn on a free port, in a thread with its own event loop (next to a fake
pay_api), against this run's database and Redis: schemathesis speaks HTTP to it like any client.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
import schemathesis
import uvicorn
from billing.main import create_app
from billing_fakes import FakePayApi, FakePayApiServer
from conftest import SERVICE_SECRET, make_settings, service_token, user_token
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

USER_ID = uuid.uuid4()
EXAMPLES_PER_OPERATION = 10
# Which service calls which internal path (see docs/contracts.md); anything else is the admin's.
CALLERS = (
    ("/internal/v1/films", "etl"),
    ("/internal/v1/plans", "etl"),
    ("/internal/v1/access", "movies"),
    ("/internal/v1/payment-events", "pay_api"),
)


class LiveBilling:
    """billing and a fake pay_api served from one background event loop."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.database_url = database_url
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        fake = FakePayApi(secret=SERVICE_SECRET)
        fake_server = FakePayApiServer(fake)
        await fake_server.start()
        app = create_app(make_settings(self.database_url, fake.url), configure_logs=False)
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:  # noqa: ASYNC110 (uvicorn exposes a flag only)
            await asyncio.sleep(0.01)
        self.ready.set()
        await task
        await fake_server.stop()

    def __enter__(self) -> LiveBilling:
        self.thread.start()
        assert self.ready.wait(30), "billing did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def live_billing(database_url: str) -> Iterator[LiveBilling]:
    with LiveBilling(database_url) as live:
        yield live


@pytest.fixture(scope="module")
def billing_schema(live_billing: LiveBilling):
    return schemathesis.openapi.from_url(f"{live_billing.url}/openapi.json")


def token_for(path: str) -> str:
    if not path.startswith("/internal/"):
        return user_token(USER_ID)
    caller = next((name for prefix, name in CALLERS if path.startswith(prefix)), "admin")
    return service_token(caller)


def call(case) -> None:
    headers = {**(case.headers or {}), "Authorization": f"Bearer {token_for(case.path)}"}
    response = case.call(headers=headers)
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("code"), str) and body["code"], (case.path, body)


def test_no_input_is_a_server_error(billing_schema) -> None:
    """Every operation: its boundary cases, then random inputs that fit its schema and inputs
    that do not."""
    operations = [result.ok() for result in billing_schema.get_all_operations()]
    assert len(operations) > 20
    failures = []
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    for operation in operations:
        # Schemathesis's coverage phase first: each parameter's boundaries and wrong types.
        config = billing_schema.config.generation_for(operation=operation)
        for case in billing_schema.iter_coverage_cases(
            operation, generation_modes=modes, generation_config=config
        ):
            try:
                call(case)
            except Exception as exc:
                failures.append(f"{operation.label} (coverage): {exc}")
                break
        # Then random inputs that fit the schema and inputs that do not.
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
        run = settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )(given(case=cases)(call))
        try:
            run()
        except Exception as exc:  # one report for all operations
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
