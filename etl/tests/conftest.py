"""Fixtures: a real admin database (schema from the admin's Django migrations), helpers that change
it the way the admin does, a recording billing stand-in, and etl settings pointing at both."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from billing_stub import TEST_SECRET, BillingStub
from etl.config import Settings
from etl.sync import Etl

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from stack_env import postgres_server_url  # noqa: E402 - the stack's settings, one source

SERVER_URL = postgres_server_url()


@pytest.fixture(scope="session")
def admin_database_url() -> Iterator[str]:
    """A fresh database for this run, migrated by the admin's own `manage.py migrate`."""
    name = f"etl_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
    url = f"{SERVER_URL}/{name}"
    try:
        env = {
            **os.environ,
            "ADMIN_DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
        }
        subprocess.run(
            [sys.executable, str(REPO / "admin" / "manage.py"), "migrate", "--no-input", "-v0"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        yield url
    finally:
        with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class AdminData:
    """Writes the admin's tables as the admin does (catalog/signals.py): every change moves
    updated_at, a change of a plan's films moves the plan's, a deletion leaves a tombstone."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = psycopg.connect(url, autocommit=True)
        # Distinct, increasing change times without relying on the clock's resolution.
        self._clock = datetime.now(UTC) - timedelta(minutes=30)

    def tick(self) -> datetime:
        self._clock += timedelta(milliseconds=1)
        return self._clock

    def add_film(self, title: str, *, active: bool = True, film_id: str | None = None) -> str:
        film_id = film_id or str(uuid.uuid4())
        now = self.tick()
        self.conn.execute(
            "INSERT INTO catalog_film (id, title, description, active, created_at, updated_at)"
            " VALUES (%s, %s, '', %s, %s, %s)",
            (film_id, title, active, now, now),
        )
        return film_id

    def update_film(self, film_id: str, **fields) -> None:
        self._update("catalog_film", film_id, fields)

    def add_plan(
        self,
        name: str,
        *,
        films: list[str] = (),
        price_amount: int = 999,
        currency: str = "usd",
        active: bool = True,
        all_films: bool = False,
        plan_id: str | None = None,
    ) -> str:
        plan_id = plan_id or str(uuid.uuid4())
        now = self.tick()
        self.conn.execute(
            "INSERT INTO catalog_plan (id, name, description, price_amount, currency,"
            " period_unit, period_count, refund_window_days, active, all_films, created_at,"
            " updated_at) VALUES (%s, %s, %s, %s, %s, 'month', 1, 14, %s, %s, %s, %s)",
            (plan_id, name, f"{name} plan", price_amount, currency, active, all_films, now, now),
        )
        self.set_plan_films(plan_id, films)
        return plan_id

    def update_plan(self, plan_id: str, **fields) -> None:
        self._update("catalog_plan", plan_id, fields)

    def set_plan_films(self, plan_id: str, films) -> None:
        with self.conn.transaction():
            self.conn.execute("DELETE FROM catalog_plan_films WHERE plan_id = %s", (plan_id,))
            for film_id in films:
                self.conn.execute(
                    "INSERT INTO catalog_plan_films (plan_id, film_id) VALUES (%s, %s)",
                    (plan_id, film_id),
                )
            self._touch("catalog_plan", plan_id)

    def delete_film(self, film_id: str) -> None:
        with self.conn.transaction():
            plan_ids = [
                row[0]
                for row in self.conn.execute(
                    "SELECT plan_id FROM catalog_plan_films WHERE film_id = %s", (film_id,)
                )
            ]
            for plan_id in plan_ids:
                self._touch("catalog_plan", plan_id)
            self.conn.execute("DELETE FROM catalog_plan_films WHERE film_id = %s", (film_id,))
            self.conn.execute("DELETE FROM catalog_film WHERE id = %s", (film_id,))
            self._tombstone("film", film_id)

    def delete_plan(self, plan_id: str) -> None:
        with self.conn.transaction():
            self.conn.execute("DELETE FROM catalog_plan_films WHERE plan_id = %s", (plan_id,))
            self.conn.execute("DELETE FROM catalog_plan WHERE id = %s", (plan_id,))
            self._tombstone("plan", plan_id)

    def add_promo_code(self, code: str, *, plans=(), **fields) -> str:
        promo_id = str(uuid.uuid4())
        now = self.tick()
        values = {
            "id": promo_id,
            "code": code,
            "description": "",
            "percent_off": 20,
            "amount_off": None,
            "currency": "",
            "duration": "once",
            "duration_periods": None,
            "valid_from": None,
            "valid_until": None,
            "max_redemptions": None,
            "max_per_user": 1,
            "first_purchase_only": False,
            "all_plans": not plans,
            "active": True,
            "created_at": now,
            "updated_at": now,
            **fields,
        }
        self._insert("catalog_promo_code", values)
        self._set_links("catalog_promo_code", "promocode_id", promo_id, plans)
        return promo_id

    def add_personal_discount(self, user_id: str, *, plans=(), **fields) -> str:
        discount_id = str(uuid.uuid4())
        now = self.tick()
        values = {
            "id": discount_id,
            "user_id": user_id,
            "percent_off": 50,
            "amount_off": None,
            "currency": "",
            "valid_until": None,
            "note": "support ticket 42",
            "all_plans": not plans,
            "active": True,
            "created_at": now,
            "updated_at": now,
            **fields,
        }
        self._insert("catalog_personal_discount", values)
        self._set_links("catalog_personal_discount", "personaldiscount_id", discount_id, plans)
        return discount_id

    def update_promo_code(self, promo_id: str, **fields) -> None:
        self._update("catalog_promo_code", promo_id, fields)

    def delete_promo_code(self, promo_id: str) -> None:
        with self.conn.transaction():
            self.conn.execute(
                "DELETE FROM catalog_promo_code_plans WHERE promocode_id = %s", (promo_id,)
            )
            self.conn.execute("DELETE FROM catalog_promo_code WHERE id = %s", (promo_id,))
            self._tombstone("promo_code", promo_id)

    def delete_personal_discount(self, discount_id: str) -> None:
        with self.conn.transaction():
            self.conn.execute(
                "DELETE FROM catalog_personal_discount_plans WHERE personaldiscount_id = %s",
                (discount_id,),
            )
            self.conn.execute("DELETE FROM catalog_personal_discount WHERE id = %s", (discount_id,))
            self._tombstone("personal_discount", discount_id)

    def _insert(self, table: str, values: dict) -> None:
        columns = ", ".join(values)
        placeholders = ", ".join(f"%({name})s" for name in values)
        self.conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", values)

    def _set_links(self, table: str, key: str, object_id: str, plans) -> None:
        for plan_id in plans:
            self.conn.execute(
                f"INSERT INTO {table}_plans ({key}, plan_id) VALUES (%s, %s)", (object_id, plan_id)
            )

    def _update(self, table: str, object_id: str, fields: dict) -> None:
        assignments = ", ".join(f"{name} = %({name})s" for name in fields)
        self.conn.execute(
            f"UPDATE {table} SET {assignments}, updated_at = %(now)s WHERE id = %(id)s",
            {**fields, "now": self.tick(), "id": object_id},
        )

    def _touch(self, table: str, object_id: str) -> None:
        self.conn.execute(
            f"UPDATE {table} SET updated_at = %s WHERE id = %s", (self.tick(), object_id)
        )

    def _tombstone(self, model: str, object_id: str) -> None:
        self.conn.execute(
            "INSERT INTO catalog_deletion_log (model, object_id, deleted_at) VALUES (%s, %s, %s)",
            (model, object_id, self.tick()),
        )


@pytest.fixture
def admin(admin_database_url) -> Iterator[AdminData]:
    data = AdminData(admin_database_url)
    data.conn.execute(
        "TRUNCATE catalog_promo_code_plans, catalog_promo_code, catalog_personal_discount_plans,"
        " catalog_personal_discount, catalog_plan_films, catalog_plan, catalog_film,"
        " catalog_deletion_log"
    )
    yield data
    data.conn.close()


@pytest.fixture
def billing() -> Iterator[BillingStub]:
    stub = BillingStub(secret=TEST_SECRET).start()
    yield stub
    stub.stop()


@pytest.fixture
def settings(admin_database_url, billing, tmp_path) -> Settings:
    return Settings(
        admin_database_url=admin_database_url,
        billing_url=billing.url,
        service_jwt_secret=TEST_SECRET,
        state_file=tmp_path / "etl" / "state.json",
        batch_size=2,  # several batches per pass even with a handful of rows
        lookback_seconds=120,
        http_timeout_seconds=5,
        http_attempts=2,
        backoff_base_seconds=0.01,
        backoff_max_seconds=0.05,
    )


@pytest.fixture
def etl(settings) -> Iterator[Etl]:
    worker = Etl(settings)
    yield worker
    worker.close()
