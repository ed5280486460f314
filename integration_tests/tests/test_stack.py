"""`scripts/stack.sh` as a user meets it: `make up` twice, `make down`, `make up` keeps every piece
of data (billing's, pay_api's and localstripe's, so the three still agree), a failed `make up`
leaves nothing running, `make reset` starts empty; on a fresh machine its own PostgreSQL is UTF-8
with no locale set, and a PostgreSQL that asks a password is not taken for a usable one.

The stack is its own (ports IT_PORT_BASE+100.., databases cinema_<IT_NAME>_cycle_*, data in
var/<IT_NAME>_cycle, Redis keys under its own prefix): it never touches a developer's stack or the
session's integration stack."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import allure
import httpx
import psycopg
import pytest

from integration_tests.clients import CARD_OK, BillingClient, PaymentPage, StackSettings
from integration_tests.clients.stack import ROOT
from integration_tests.clients.stripe_side import StripeSide
from integration_tests.scenario import COVERED_FILM_ID, DEMO_PLAN_ID

pytestmark = allure.feature("make up / down / reset")

NAME = f"{os.environ.get('IT_NAME', 'it')}_cycle"
PORT_BASE = int(os.environ.get("IT_PORT_BASE", "28000")) + 100
CYCLE_ENV = {
    "ADMIN_PORT": str(PORT_BASE),
    "BILLING_PORT": str(PORT_BASE + 1),
    "PAY_API_PORT": str(PORT_BASE + 2),
    "LOCALSTRIPE_PORT": str(PORT_BASE + 20),
    "MAIL_PORT": str(PORT_BASE + 25),
    "MAIL_SMTP_PORT": str(PORT_BASE + 26),
    "DB_PREFIX": f"cinema_{NAME}",
    "DATA_DIR": str(ROOT / "var" / NAME),
    "REDIS_DB": os.environ.get("IT_REDIS_DB", "9"),
    "BILLING_REDIS_PREFIX": f"billing_{NAME}:",
    "STRIPE_OFFLINE": "1",
    "WORKER_COPIES": "1",
    "BILLING_DB_POOL_SIZE": "3",  # a small stack: the PostgreSQL server is shared
    "BILLING_DB_MAX_OVERFLOW": "3",
    "BILLING_RENEWAL_CONCURRENCY": "2",  # at most the pool above (billing refuses more)
    "BILLING_WORKER_INTERVAL_SECONDS": "0.5",
    "ETL_INTERVAL_SECONDS": "1",
}
SERVICE_PORTS = ("ADMIN_PORT", "BILLING_PORT", "PAY_API_PORT", "LOCALSTRIPE_PORT", "MAIL_PORT")
for _derived in (
    "ADMIN_DATABASE_URL",
    "BILLING_DATABASE_URL",
    "PAY_API_DATABASE_URL",
    "REDIS_URL",
    "ADMIN_URL",
    "BILLING_URL",
    "PAY_API_URL",
    "PAY_API_PUBLIC_URL",
    "STRIPE_API_BASE",
    "STRIPE_JS_URL",
    "ETL_STATE_FILE",
    "PAY_API_FAILPOINTS_DIR",
    "MAIL_URL",
    "BILLING_SMTP_PORT",
):
    CYCLE_ENV[_derived] = ""  # derived from the settings above, whatever the caller's environment


def stack_sh(*command: str, env: dict[str, str] | None = None, **extra: str):
    """scripts/stack.sh COMMAND with the cycle stack's settings (or `env`); its output, attached."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "stack.sh"), *command],
        env={**(env or {**os.environ, **CYCLE_ENV}), **extra},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    allure.attach(
        f"$ stack.sh {' '.join(command)}  (exit {result.returncode})\n{result.stdout}{result.stderr}",
        name=f"stack.sh {' '.join(command)}",
        attachment_type=allure.attachment_type.TEXT,
    )
    return result


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def cycle() -> Iterator[StackSettings]:
    stack_sh("down")
    yield StackSettings.load(CYCLE_ENV)
    stack_sh("down")


@allure.title("make up twice, down, up: the second up changes nothing; data survives down and up")
def test_up_keeps_data_and_says_already_running(cycle, on_exchange):
    with allure.step("make up on an empty data folder (as `up --fresh`)"):
        started = stack_sh("up", "--fresh")
        assert started.returncode == 0, started.stderr
        assert "Cinema Billing is up" in started.stdout
    with allure.step("The demo catalog is in billing as soon as `up` returns"):
        user = BillingClient(cycle, on_exchange=on_exchange)
        plans = user.plans().json()["items"]
        assert DEMO_PLAN_ID in {plan["id"] for plan in plans}
    with allure.step("A user buys the plan and pays"):
        bought = user.buy(DEMO_PLAN_ID)
        assert bought.status_code == 201, bought.text
        payment = bought.json()["payment"]
        assert PaymentPage(cycle, payment["payment_url"], on_exchange).pay(CARD_OK).status == (
            "succeeded"
        )
        assert user.wait_for_payment(payment["id"], {"succeeded"})["status"] == "succeeded"
        stripe_before = StripeSide(cycle).payment(payment["id"])
        assert stripe_before.charged == payment["amount"]

    with allure.step("A second make up says the stack runs and changes nothing"):
        status_before = stack_sh("status").stdout
        again = stack_sh("up")
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout
        assert "nothing changed" in again.stdout
        assert stack_sh("status").stdout == status_before  # the same processes, same pids
        assert user.payment(payment["id"]).json()["status"] == "succeeded"

    with allure.step("make down stops every service"):
        assert stack_sh("down").returncode == 0
        assert "not running" in stack_sh("status").stdout
        for port in SERVICE_PORTS:
            assert not listening(int(CYCLE_ENV[port])), port

    with allure.step("make up again: the paid subscription survived, access still granted"):
        restarted = stack_sh("up")
        assert restarted.returncode == 0, restarted.stderr
        assert user.payment(payment["id"]).json()["status"] == "succeeded"
        access = user.access(COVERED_FILM_ID).json()
        assert access["allowed"] is True, access
    with allure.step("localstripe still knows the payment's objects"):
        stripe_after = StripeSide(cycle).payment(payment["id"])
        assert [i["id"] for i in stripe_after.intents] == [i["id"] for i in stripe_before.intents]
        assert stripe_after.charged == payment["amount"]
    with allure.step("billing, pay_api and Stripe still agree: the refund goes through"):
        assert user.cancel(bought.json()["subscription"]["id"]).status_code == 200
        refunded = user.wait_for_payment(payment["id"], {"refunded"})
        assert refunded["status"] == "refunded", refunded
        assert StripeSide(cycle).payment(payment["id"]).refunded == payment["amount"]


@allure.title("A failed make up leaves nothing running; a taken port is reported before any change")
def test_failed_up_leaves_nothing_started(cycle):
    stack_sh("down")
    with allure.step("A port taken by another program: refused before anything starts"):
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", int(CYCLE_ENV["ADMIN_PORT"])))
            squatter.listen()
            refused = stack_sh("up")
        assert refused.returncode != 0
        assert f"port {CYCLE_ENV['ADMIN_PORT']} for admin is taken" in refused.stderr
        assert "not running" in stack_sh("status").stdout
        assert not listening(int(CYCLE_ENV["LOCALSTRIPE_PORT"]))
    with allure.step("billing fails to start after localstripe did: everything is stopped again"):
        # with several web processes (the default), as a user's `make up` runs them
        failed = stack_sh("up", BILLING_DB_POOL_SIZE="not-a-number")
        assert failed.returncode != 0
        assert "stopping what it started" in failed.stderr
        assert "stopped localstripe" in failed.stderr
        assert "not running" in stack_sh("status").stdout
        for port in SERVICE_PORTS:
            assert not listening(int(CYCLE_ENV[port])), port


@allure.title("make reset starts the system again with no data but the demo catalog")
def test_reset_wipes_the_data(cycle, on_exchange):
    stack_sh("down")
    assert stack_sh("up").returncode == 0
    user = BillingClient(cycle, on_exchange=on_exchange)
    with allure.step("A user buys the plan (a payment in billing, an intent at localstripe)"):
        bought = user.buy(DEMO_PLAN_ID)
        assert bought.status_code == 201, bought.text
        payment_id = bought.json()["payment"]["id"]
        assert user.payments().json()["items"]
    with allure.step("make reset"):
        reset = stack_sh("reset")
        assert reset.returncode == 0, reset.stderr
        assert "wiped the data" in reset.stderr
        assert "Cinema Billing is up" in reset.stdout
    with allure.step("The payment is gone from billing and from localstripe; the catalog is back"):
        assert user.payment(payment_id).status_code == 404
        assert user.payments().json()["items"] == []
        assert StripeSide(cycle).payments() == {}
        assert DEMO_PLAN_ID in {plan["id"] for plan in user.plans().json()["items"]}
    with allure.step("The URLs `make up` printed answer"):
        for line in reset.stdout.splitlines():
            url = next((word for word in line.split() if word.startswith("http")), None)
            if url and "<" not in url and "/v1/" not in url:
                assert httpx.get(url, timeout=10, follow_redirects=True).status_code == 200, url


# --- our own PostgreSQL: UTF-8 whatever the locale; a server asking a password is not ours ---------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def own_postgres() -> Iterator[dict[str, str]]:
    """Settings under which stack.sh must start a PostgreSQL of its own: a free port, a datastore
    folder of this test, and no locale at all (as on a fresh machine or in a container)."""
    datastores = ROOT / "var" / f"{NAME}_datastores"
    shutil.rmtree(datastores, ignore_errors=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LANG", "LC_")) and key != "LANGUAGE"
    }
    env.update(CYCLE_ENV, POSTGRES_PORT=str(free_port()), DATASTORE_DIR=str(datastores))
    yield env
    subprocess.run([str(ROOT / "scripts" / "stack.sh"), "stop-datastores"], env=env, check=False)
    shutil.rmtree(datastores, ignore_errors=True)


def datastores(env: dict[str, str], command: str = "datastores") -> subprocess.CompletedProcess:
    return stack_sh(command, env=env)


def connect(env: dict[str, str], dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1", port=env["POSTGRES_PORT"], user="postgres", dbname=dbname, autocommit=True
    )


@allure.title("With no locale set, stack.sh's own PostgreSQL is UTF-8 and text comes back as str")
def test_own_postgres_is_utf8_whatever_the_locale(own_postgres):
    with allure.step("stack.sh datastores with no LANG/LC_* and nothing on POSTGRES_PORT"):
        started = datastores(own_postgres)
        assert started.returncode == 0, started.stderr
        assert "creating a cluster" in started.stderr
    with allure.step("The cluster, a new database and the text read back are UTF-8"):
        with connect(own_postgres) as conn:
            assert conn.execute("SHOW server_encoding").fetchone()[0] == "UTF8"
            conn.execute('CREATE DATABASE "made_later"')
            encodings = dict(
                conn.execute("SELECT datname, pg_encoding_to_char(encoding) FROM pg_database")
            )
        assert encodings["template1"] == encodings["made_later"] == "UTF8"
        with connect(own_postgres, "made_later") as conn:
            assert conn.execute("SELECT 'Nosferatu — ¥500 ü'").fetchone()[0] == "Nosferatu — ¥500 ü"
    with allure.step("stack.sh stop-datastores stops it"):
        assert "stopped our PostgreSQL" in datastores(own_postgres, "stop-datastores").stderr


@allure.title("A PostgreSQL that asks a password is not taken for a usable one")
def test_a_postgres_asking_a_password_is_refused_clearly(own_postgres):
    assert datastores(own_postgres).returncode == 0
    with allure.step("The server on POSTGRES_PORT now asks a password over TCP (as Debian's own)"):
        with connect(own_postgres) as conn:
            conn.execute("ALTER USER postgres PASSWORD 'only-the-dba-knows'")
            hba = conn.execute("SHOW hba_file").fetchone()[0]
            Path(hba).write_text(
                "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n", encoding="utf-8"
            )
            conn.execute("SELECT pg_reload_conf()")
        with pytest.raises(psycopg.OperationalError, match="password"):
            connect(own_postgres).close()
    with allure.step("stack.sh says so and how to go on, and starts nothing on that port"):
        refused = datastores(own_postgres)
        assert refused.returncode != 0
        assert "without a password" in refused.stderr
        assert "set POSTGRES_PORT to a free port" in refused.stderr
