"""What the fault tests do to the running system: stop and kill services, arm crash points,
sign webhooks as Stripe does, cut PostgreSQL connections; and how they read the outcome."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from integration_tests.clients import (
    CARD_OK,
    BillingClient,
    BillingInternalClient,
    PaymentPage,
    StackSettings,
)
from integration_tests.clients.stripe_side import StripeSide
from integration_tests.faults.audit import FINAL, problems
from integration_tests.faults.own_stack import run_stack
from integration_tests.scenario import DEMO_PLAN_ID


class Faults:
    def __init__(self, settings: StackSettings, on_exchange=None):
        self.settings = settings
        self.on_exchange = on_exchange  # attaches each HTTP exchange to the report
        self.failpoints = Path(settings["PAY_API_FAILPOINTS_DIR"])
        self.stripe = StripeSide(settings)
        self.billing_admin = BillingInternalClient(settings, "admin", on_exchange=on_exchange)

    # --- processes ---------------------------------------------------------------------------

    def stack(self, *command: str, **env: str) -> None:
        run_stack(list(command), {**self.settings.env(), **env})

    @property
    def billing_workers(self) -> list[str]:
        """Every copy of billing's worker (to stop the reconciler entirely): stack.sh's name for
        all of them; `billing-worker-2` would be one."""
        return ["billing-worker"]

    def arm(self, failpoint: str, subject: str | None = None) -> Path:
        """The next pay_api process to reach `failpoint` kills itself there (SIGKILL); with a
        `subject` (a user, payment or refund id), only where that subject is at stake."""
        self.failpoints.mkdir(parents=True, exist_ok=True)
        armed = self.failpoints / failpoint
        armed.write_text(subject or "")
        return armed

    def log_records(self, name: str, event: str) -> list[dict[str, Any]]:
        """The JSON log records of one process of the stack (`billing-worker-2`) saying `event`."""
        path = Path(self.settings["DATA_DIR"]) / "log" / f"{name}.log"
        records = []
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line some library printed
            if isinstance(record, dict) and record.get("event") == event:
                records.append(record)
        return records

    def disarm_all(self) -> None:
        for armed in self.failpoints.glob("*"):
            armed.unlink()

    # --- Stripe's webhooks -------------------------------------------------------------------

    def signed_webhook(
        self, event_type: str, obj: dict[str, Any], *, timestamp: int | None = None
    ) -> tuple[bytes, str]:
        """An event as Stripe sends it: body and `Stripe-Signature` header (v1 HMAC-SHA256)."""
        created = timestamp or int(time.time())
        event = {
            "id": f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "type": event_type,
            "created": created,
            "api_version": "2017-08-15",
            "livemode": False,
            "data": {"object": obj},
        }
        body = json.dumps(event).encode()
        secret = self.settings["STRIPE_WEBHOOK_SECRET"].encode()
        signature = hmac.new(secret, b"%d.%s" % (created, body), hashlib.sha256).hexdigest()
        return body, f"t={created},v1={signature}"

    def post_webhook(self, body: bytes, signature: str) -> httpx.Response:
        return httpx.post(
            f"{self.settings.pay_api_url}/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
            timeout=15,
        )

    def lose_webhooks(self) -> None:
        """localstripe delivers to a closed port from now on (and never retries): lost."""
        self._register_webhook("http://127.0.0.1:9/lost")

    def restore_webhooks(self) -> None:
        self._register_webhook(f"{self.settings['PAY_API_PUBLIC_URL']}/webhooks/stripe")

    def _register_webhook(self, url: str) -> None:
        response = httpx.post(
            f"http://127.0.0.1:{self.settings['LOCALSTRIPE_PORT']}/_config/webhooks/pay_api",
            data={"url": url, "secret": self.settings["STRIPE_WEBHOOK_SECRET"]},
            timeout=5,
        )
        response.raise_for_status()

    def intent(self, intent_id: str) -> dict[str, Any]:
        return self.stripe.http.get(f"/v1/payment_intents/{intent_id}").json()

    # --- PostgreSQL --------------------------------------------------------------------------

    def terminate_billing_connections(self) -> int:
        """Cut every connection billing holds to its database, mid-transaction or not."""
        return len(
            self._on_postgres(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                f"{self.settings['DB_PREFIX']}_billing",
            )
        )

    def pay_api_lock_waiters(self) -> int:
        """pay_api's database sessions waiting for a lock another transaction holds (a request
        waiting for a payment's row lock, say)."""
        return len(
            self._on_postgres(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                f"{self.settings['DB_PREFIX']}_pay_api",
            )
        )

    def stall_lease(self, payment_id: str) -> None:
        """The lease billing's worker holds on a payment runs out now, while that worker is
        still inside its call (as when a process stalls past its lease): another copy may take
        the row. Leases are real time, so this is the one way to get there without waiting."""
        self._on_postgres(
            "UPDATE payments SET claimed_until = now() - interval '1 second' WHERE id = %s",
            payment_id,
            dbname=f"{self.settings['DB_PREFIX']}_billing",
            fetch=False,
        )

    def _on_postgres(
        self, sql: str, *params: Any, dbname: str = "postgres", fetch: bool = True
    ) -> list[tuple]:
        with psycopg.connect(
            host=self.settings["POSTGRES_HOST"],
            port=self.settings["POSTGRES_PORT"],
            user=self.settings["POSTGRES_USER"],
            dbname=dbname,
            autocommit=True,
        ) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if fetch else []

    # --- outcomes ----------------------------------------------------------------------------

    def billing_payment(self, payment_id: str) -> dict[str, Any]:
        response = self.billing_admin.http.get(f"/internal/v1/payments/{payment_id}")
        response.raise_for_status()
        return response.json()

    def settle(self, payment_id: str, timeout: float = 45) -> dict[str, Any]:
        """Wait until billing holds the payment final; its last view either way."""
        deadline = time.monotonic() + timeout
        while True:
            payment = self.billing_payment(payment_id)
            if payment["status"] in FINAL or time.monotonic() > deadline:
                return payment
            time.sleep(0.5)

    def settle_and_audit(self, payment_id: str, timeout: float = 45) -> list[str]:
        """Wait for billing to agree with Stripe; what still disagrees after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            payment = self.settle(payment_id, timeout=max(1, deadline - time.monotonic()))
            found = problems(payment, self.stripe.payment(payment_id))
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    # --- a user ------------------------------------------------------------------------------

    def bought(self) -> tuple[BillingClient, dict[str, Any]]:
        user = BillingClient(self.settings, on_exchange=self.on_exchange)
        response = user.buy(DEMO_PLAN_ID)
        assert response.status_code == 201, response.text
        return user, response.json()["payment"]

    def paid(self) -> tuple[BillingClient, dict[str, Any]]:
        user, payment = self.bought()
        result = PaymentPage(self.settings, payment["payment_url"], self.on_exchange).pay(CARD_OK)
        assert result.status == "succeeded", result.body
        assert user.wait_for_payment(payment["id"], {"succeeded"})["status"] == "succeeded"
        return user, payment
