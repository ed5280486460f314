"""The admin's read-only reports: each dashboard figure against a known set of payments written
in March 2020 (no other test writes there), the CSV exports, finding a customer, the timeline."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from conftest import as_service, as_user
from sqlalchemy import text

pytestmark = pytest.mark.asyncio(loop_scope="session")


def at(day: int, hour: int = 12, month: int = 3) -> datetime:
    return datetime(2020, month, day, hour, tzinfo=UTC)


@dataclass
class Known:
    """The March 2020 set: who is who, for the assertions."""

    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    plans: dict[str, uuid.UUID] = field(default_factory=dict)
    users: dict[str, uuid.UUID] = field(default_factory=dict)
    subscriptions: dict[str, uuid.UUID] = field(default_factory=dict)
    payments: dict[str, uuid.UUID] = field(default_factory=dict)
    refunds: dict[str, uuid.UUID] = field(default_factory=dict)


async def _insert(conn, table: str, **values) -> None:
    columns = ", ".join(values)
    names = ", ".join(f":{k}" for k in values)
    await conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({names})"), values)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def known(resources) -> AsyncIterator[Known]:
    """Seven customers (A–G) whose March 2020 is written straight into billing's tables:
    A monthly 10.00 USD, keeps it; B 7-day 7.00 USD, 3.00 refunded, expires on the 10th;
    C monthly, refunded in full on the 6th (ended); D declined, never paid; E monthly, 2.00
    refunded on the 9th then returned by the bank on the 11th (reversal), auto-renew off on the
    20th; F 7-day, renewed on the 8th, renewal declined on the 15th, expired on the 16th;
    G monthly 1000 JPY."""
    k = Known()
    async with resources.engine.begin() as conn:
        for name, price, currency, unit in (
            ("M", 1000, "usd", "month"),
            ("D", 700, "usd", "day"),
            ("J", 1000, "jpy", "month"),
        ):
            k.plans[name] = uuid.uuid4()
            await _insert(
                conn, "plans", id=k.plans[name], name=f"Report {name} {k.run}", description="",
                price_amount=price, currency=currency, period_unit=unit,
                period_count=7 if unit == "day" else 1, refund_window_days=14, active=True,
                all_films=True,
            )  # fmt: skip

        async def subscription(who, plan, status, *, start, end=None, ended=None, canceled=None):
            k.users[who] = k.users.get(who) or uuid.uuid4()
            sid = k.subscriptions[who] = uuid.uuid4()
            await _insert(
                conn, "subscriptions", id=sid, user_id=k.users[who], plan_id=k.plans[plan],
                status=status, period_unit="day" if plan == "D" else "month",
                period_count=7 if plan == "D" else 1, refund_window_days=14,
                current_period_start=start if end else None, current_period_end=end,
                auto_renew=canceled is None and ended is None, needs_attention=False,
                canceled_at=canceled, ended_at=ended, created_at=start, updated_at=start,
            )  # fmt: skip
            return sid

        async def payment(name, who, plan, status, amount, currency, *, created, succeeded=None,
                          period=None, kind="first", refunded=0, failure=None):  # fmt: skip
            pid = k.payments[name] = uuid.uuid4()
            await _insert(
                conn, "payments", id=pid, user_id=k.users[who],
                subscription_id=k.subscriptions[who], plan_id=k.plans[plan], kind=kind,
                status=status, amount=amount, currency=currency, refunded_amount=refunded,
                description="", stripe_payment_intent_id=f"pi_{name}_{k.run}",
                failure_code=failure, expires_at=created, next_check_at=created,
                check_attempts=0, period_start=period[0] if period else None,
                period_end=period[1] if period else None, succeeded_at=succeeded,
                created_at=created, updated_at=succeeded or created,
            )  # fmt: skip
            if succeeded:
                await _insert(
                    conn, "ledger_entries", payment_id=pid, user_id=k.users[who], kind="charge",
                    amount=amount, currency=currency, created_at=succeeded,
                )  # fmt: skip
            return pid

        async def refund(name, payment_name, who, amount, status, *, created, returned=None):
            rid = k.refunds[name] = uuid.uuid4()
            await _insert(
                conn, "refunds", id=rid, payment_id=k.payments[payment_name],
                user_id=k.users[who], amount=amount, currency="usd", status=status,
                reason="test", initiated_by="admin", ends_subscription=False,
                stripe_refund_id=f"re_{name}_{k.run}", next_check_at=created, check_attempts=0,
                created_at=created, updated_at=returned or created,
            )  # fmt: skip
            for kind, when in (("refund", created), ("reversal", returned)):
                if when:
                    await _insert(
                        conn, "ledger_entries", payment_id=k.payments[payment_name],
                        refund_id=rid, user_id=k.users[who], kind=kind, amount=amount,
                        currency="usd", created_at=when,
                    )  # fmt: skip

        await subscription("A", "M", "active", start=at(2), end=at(2, month=4))
        await payment("A1", "A", "M", "succeeded", 1000, "usd", created=at(2, 10),
                      succeeded=at(2), period=(at(2), at(2, month=4)))  # fmt: skip

        await subscription("B", "D", "expired", start=at(3), end=at(10), ended=at(10))
        await payment("B1", "B", "D", "partially_refunded", 700, "usd", created=at(3, 10),
                      succeeded=at(3), period=(at(3), at(10)), refunded=300)  # fmt: skip
        await refund("B-r", "B1", "B", 300, "succeeded", created=at(4))

        await subscription("C", "M", "refunded", start=at(5), end=at(5, month=4), ended=at(6))
        await payment("C1", "C", "M", "refunded", 1000, "usd", created=at(5, 10),
                      succeeded=at(5), period=(at(5), at(5, month=4)), refunded=1000)  # fmt: skip
        await refund("C-r", "C1", "C", 1000, "succeeded", created=at(6))

        await subscription("D", "M", "incomplete_expired", start=at(7), ended=at(7, 13))
        await payment("D1", "D", "M", "expired", 1000, "usd", created=at(7),
                      failure="card_declined")  # fmt: skip

        await subscription("E", "M", "canceled", start=at(8), end=at(8, month=4),
                           canceled=at(20))  # fmt: skip
        await payment("E1", "E", "M", "succeeded", 1000, "usd", created=at(8, 10),
                      succeeded=at(8), period=(at(8), at(8, month=4)))  # fmt: skip
        await refund("E-r", "E1", "E", 200, "failed", created=at(9), returned=at(11))

        await subscription("F", "D", "expired", start=at(1), end=at(15), ended=at(16))
        await payment("F1", "F", "D", "succeeded", 700, "usd", created=at(1, 10),
                      succeeded=at(1), period=(at(1), at(8)))  # fmt: skip
        await payment("F2", "F", "D", "succeeded", 700, "usd", created=at(8, 11),
                      succeeded=at(8, 13), period=(at(8), at(15)), kind="renewal")  # fmt: skip
        await payment("F3", "F", "D", "failed", 700, "usd", created=at(15), kind="renewal",
                      failure="insufficient_funds", period=(at(15), at(22)))  # fmt: skip

        await subscription("G", "J", "active", start=at(10), end=at(10, month=4))
        await payment("G1", "G", "J", "succeeded", 1000, "jpy", created=at(10, 10),
                      succeeded=at(10), period=(at(10), at(10, month=4)))  # fmt: skip

        # A and E bought with the promo code SPRING-<run> (A first).
        promo = uuid.uuid4()
        await _insert(
            conn, "promo_codes", id=promo, code=f"SPRING-{k.run}", duration="once",
            percent_off=10, first_purchase_only=False, all_plans=True, active=True,
        )  # fmt: skip
        for who, payment_name in (("A", "A1"), ("E", "E1")):
            await _insert(
                conn, "promo_redemptions", id=uuid.uuid4(), promo_code_id=promo,
                user_id=k.users[who], payment_id=k.payments[payment_name],
                subscription_id=k.subscriptions[who], code=f"SPRING-{k.run}",
                status="confirmed", duration="once", percent_off=10,
                created_at=at(2 if who == "A" else 8),
            )  # fmt: skip
    yield k
    # The plans cover every film: left active, they would make "free" films covered for the
    # tests of other modules that run after this one.
    async with resources.engine.begin() as conn:
        await conn.execute(
            text("UPDATE plans SET active = false WHERE id = ANY(:ids)"),
            {"ids": list(k.plans.values())},
        )


async def _summary(billing, **params):
    response = await billing.client.get(
        "/internal/v1/reports/summary", params=params, headers=as_service("admin")
    )
    assert response.status_code == 200, response.text
    return response.json()


def _row(summary, start: str, currency: str = "usd") -> dict:
    (row,) = [
        r for r in summary["series"] if r["period_start"] == start and r["currency"] == currency
    ]
    return row


async def test_month_totals_match_the_known_payments(billing, known):
    summary = await _summary(billing, date_from="2020-03-01", date_to="2020-03-31")
    assert summary["currencies"] == ["jpy", "usd"]
    totals = {t["currency"]: t for t in summary["totals"]}
    assert totals["usd"] == {
        "currency": "usd",
        "gross": 700 + 1000 + 700 + 1000 + 1000 + 700,  # F1 A1 B1 C1 E1 F2
        "refunds": 300 + 1000 + 200 - 200,  # E's refund came back: its reversal cancels it
        "net": 5100 - 1300,
        "refund_rate": round(1300 / 5100, 4),
        "new_subscribers": 5,  # F A B C E (D never paid)
        "churned_subscribers": 3,  # C refunded, B and F expired
        "failed_payments": 1,  # D
        "renewals": 1,  # F2
        "failed_renewals": 1,  # F3
        "active_subscribers": 2,  # A and E hold a period on April 1st
        "mrr": 1000,  # A only: E turned auto-renew off on the 20th
    }
    assert totals["jpy"]["gross"] == 1000 and totals["jpy"]["mrr"] == 1000
    assert totals["jpy"]["active_subscribers"] == 1 and totals["jpy"]["refund_rate"] == 0.0


async def test_daily_series_puts_each_figure_on_its_day(billing, known):
    summary = await _summary(billing, date_from="2020-03-01", date_to="2020-03-31")
    assert len(summary["series"]) == 31 * 2  # every day, for each currency, zeros included
    assert _row(summary, "2020-03-08")["gross"] == 1700  # E1 and F's renewal
    assert _row(summary, "2020-03-08")["renewals"] == 1
    assert _row(summary, "2020-03-11")["refunds"] == -200  # the reversal lands on its own day
    assert _row(summary, "2020-03-04")["refund_rate"] is None  # a refund, but nothing charged
    assert _row(summary, "2020-03-06")["churned_subscribers"] == 1
    assert _row(summary, "2020-03-07")["failed_payments"] == 1
    assert _row(summary, "2020-03-15")["failed_renewals"] == 1
    third = _row(summary, "2020-03-03")  # measured at the end of the 3rd
    assert third["active_subscribers"] == 3  # F, A, B
    assert third["mrr"] == 3000 + 1000 + 3000  # 7.00 per 7 days is 30.00 a month
    assert third["period_end"] == "2020-03-04"
    assert _row(summary, "2020-03-20", "jpy")["active_subscribers"] == 1


async def test_weeks_start_on_monday_and_months_on_the_first(billing, known):
    weekly = await _summary(
        billing, date_from="2020-03-01", date_to="2020-03-08", granularity="week"
    )
    assert [r["period_start"] for r in weekly["series"] if r["currency"] == "usd"] == [
        "2020-02-24",
        "2020-03-02",
    ]
    assert _row(weekly, "2020-02-24")["gross"] == 700
    assert _row(weekly, "2020-03-02")["gross"] == 1000 + 700 + 1000 + 1700
    monthly = await _summary(
        billing, date_from="2020-03-15", date_to="2020-03-15", granularity="month"
    )
    assert _row(monthly, "2020-03-01")["net"] == 3800


async def test_report_input_errors_are_422_and_other_services_403(billing):
    for params, code in (
        ({"date_from": "2020-03-02", "date_to": "2020-03-01"}, "validation_error"),
        ({"date_from": "2000-01-01", "date_to": "2020-01-01"}, "report_range_too_large"),
        ({"date_from": "2020-01-01", "date_to": "2020-01-02", "granularity": "year"}, "validation_error"),
        ({"date_from": "yesterday", "date_to": "2020-01-02"}, "validation_error"),
    ):  # fmt: skip
        response = await billing.client.get(
            "/internal/v1/reports/summary", params=params, headers=as_service("admin")
        )
        assert response.status_code == 422 and response.json()["code"] == code, response.text
    for path in ("/internal/v1/reports/summary", "/internal/v1/reports/payments.csv"):
        response = await billing.client.get(path, headers=as_service("movies"))
        assert response.status_code == 403
        response = await billing.client.get(path, headers=as_user(uuid.uuid4()))
        assert response.status_code == 401


async def _csv(billing, name: str, **params) -> list[dict]:
    response = await billing.client.get(
        f"/internal/v1/reports/{name}.csv", params=params, headers=as_service("admin")
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert f'filename="{name}.csv"' in response.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(response.text)))


async def test_payments_csv_filters_by_dates_status_currency_and_plan(billing, known):
    march = {"date_from": "2020-03-01", "date_to": "2020-03-31"}
    rows = await _csv(billing, "payments", **march)
    assert [r["payment_id"] for r in rows] == [
        str(known.payments[n]) for n in ("F1", "A1", "B1", "C1", "D1", "E1", "F2", "G1", "F3")
    ]  # oldest first
    b1 = rows[2]
    assert (b1["amount"], b1["amount_minor"], b1["refunded"], b1["currency"]) == (
        "7.00",
        "700",
        "3.00",
        "usd",
    )
    assert b1["plan_name"] == f"Report D {known.run}" and b1["user_id"] == str(known.users["B"])
    assert b1["stripe_payment_intent_id"] == f"pi_B1_{known.run}"
    assert (b1["created_at"], b1["succeeded_at"]) == (
        "2020-03-03T10:00:00.000000+00:00",
        "2020-03-03T12:00:00.000000+00:00",
    )
    assert rows[4]["succeeded_at"] == ""  # D1 never paid
    (g1,) = await _csv(billing, "payments", currency="jpy", **march)
    assert (g1["amount"], g1["amount_minor"]) == ("1000", "1000")  # yen have no minor unit
    failed = await _csv(billing, "payments", status="failed", **march)
    assert [(r["payment_id"], r["failure_code"]) for r in failed] == [
        (str(known.payments["F3"]), "insufficient_funds")
    ]
    by_plan = await _csv(billing, "payments", plan_id=str(known.plans["D"]), **march)
    assert {r["payment_id"] for r in by_plan} == {
        str(known.payments[n]) for n in ("B1", "F1", "F2", "F3")
    }
    first_week = await _csv(billing, "payments", date_from="2020-03-01", date_to="2020-03-03")
    assert [r["payment_id"] for r in first_week] == [
        str(known.payments[n]) for n in ("F1", "A1", "B1")
    ]


async def test_refunds_csv(billing, known):
    rows = await _csv(billing, "refunds", date_from="2020-03-01", date_to="2020-03-31")
    assert [(r["refund_id"], r["amount"], r["status"]) for r in rows] == [
        (str(known.refunds["B-r"]), "3.00", "succeeded"),
        (str(known.refunds["C-r"]), "10.00", "succeeded"),
        (str(known.refunds["E-r"]), "2.00", "failed"),
    ]
    failed = await _csv(
        billing, "refunds", status="failed", date_from="2020-03-01", date_to="2020-03-31"
    )
    assert [r["refund_id"] for r in failed] == [str(known.refunds["E-r"])]


async def test_csv_bad_filters_are_422(billing):
    for name, params in (
        ("payments", {"status": "paid"}),
        ("payments", {"currency": "US dollars"}),
        ("payments", {"date_from": "2020-02-01", "date_to": "2020-01-01"}),
        ("refunds", {"status": "partially_refunded"}),
        ("refunds", {"plan_id": "not-a-uuid"}),
    ):
        response = await billing.client.get(
            f"/internal/v1/reports/{name}.csv", params=params, headers=as_service("admin")
        )
        assert response.status_code == 422, (name, params, response.text)
        assert response.json()["code"] == "validation_error"


async def _search(billing, q: str):
    response = await billing.client.get(
        "/internal/v1/customers/search", params={"q": q}, headers=as_service("admin")
    )
    return response


async def test_a_customer_is_found_from_any_id_a_manager_has(billing, known):
    b = str(known.users["B"])
    cases = {
        b: ("user_id", None),
        str(known.payments["B1"]): ("payment_id", known.payments["B1"]),
        str(known.refunds["B-r"]): ("refund_id", known.payments["B1"]),
        str(known.subscriptions["B"]): ("subscription_id", None),
        f"pi_B1_{known.run}": ("payment_intent", known.payments["B1"]),
        f"  pi_B1_{known.run}_secret_abc ": ("payment_intent", known.payments["B1"]),
        f"re_B-r_{known.run}": ("stripe_refund", known.payments["B1"]),
    }
    for query, (via, payment_id) in cases.items():
        response = await _search(billing, query)
        assert response.status_code == 200, response.text
        assert response.json()["matches"] == [
            {"user_id": b, "via": via, "payment_id": str(payment_id) if payment_id else None}
        ], query

    billing.fake.customers["cus_report_b"] = b
    answer = (await _search(billing, "cus_report_b")).json()
    assert answer["matches"] == [{"user_id": b, "via": "stripe_customer", "payment_id": None}]
    assert billing.fake.calls_to("GET", "/internal/v1/customers/cus_report_b")[-1].claims[
        "iss"
    ] == ("billing")


async def test_a_promo_code_finds_who_redeemed_it_newest_first(billing, known):
    answer = (await _search(billing, f"spring-{known.run}")).json()
    assert answer["matches"] == [
        {"user_id": str(known.users["E"]), "via": "promo_code", "payment_id": str(known.payments["E1"])},
        {"user_id": str(known.users["A"]), "via": "promo_code", "payment_id": str(known.payments["A1"])},
    ]  # fmt: skip


async def test_search_finds_nothing_quietly_and_says_when_pay_api_is_down(billing):
    for query in (str(uuid.uuid4()), "pi_nobody", "cus_nobody", "hello"):
        response = await _search(billing, query)
        assert response.status_code == 200 and response.json()["matches"] == [], query
    empty = await _search(billing, "   ")
    assert empty.status_code == 422 and empty.json()["code"] == "validation_error"
    billing.fake.mode = "down"
    down = await _search(billing, "cus_anyone")
    assert down.status_code == 503 and down.json()["code"] == "gateway_unavailable"


async def test_timeline_lists_everything_in_order(billing, known):
    response = await billing.client.get(
        f"/internal/v1/users/{known.users['F']}/timeline", headers=as_service("admin")
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(i["kind"], i["at"][:10]) for i in items] == [
        ("payment_created", "2020-03-01"),  # created at 10:00, the subscription at 12:00
        ("payment_succeeded", "2020-03-01"),
        ("subscription_created", "2020-03-01"),
        ("payment_created", "2020-03-08"),
        ("payment_succeeded", "2020-03-08"),
        ("payment_created", "2020-03-15"),
        ("payment_failed", "2020-03-15"),
        ("subscription_ended", "2020-03-16"),
    ]
    failed = items[6]
    assert failed["title"] == "Renewal payment failed: insufficient_funds"
    assert failed["payment_id"] == str(known.payments["F3"]) and failed["amount"] == 700

    # An email about F's failed renewal, sent (delivered from the outbox) at 13:00.
    async with billing.resources.engine.begin() as conn:
        for delivered in (at(15, 13),):
            await _insert(
                conn, "outbox", topic="email", attempts=1, created_at=at(15, 12),
                delivered_at=delivered,
                payload=json.dumps({
                    "kind": "renewal_failed", "user_id": str(known.users["F"]),
                    "subject": "Your renewal failed", "to": "f@example.test",
                    "payment_id": str(known.payments["F3"]),
                    "subscription_id": str(known.subscriptions["F"]),
                }),
            )  # fmt: skip
        await conn.execute(
            text(
                "INSERT INTO outbox (topic, payload, attempts, delivered_at)"
                " VALUES ('email', :p, 1, now())"
            ),
            {"p": json.dumps({"kind": "receipt", "user_id": str(uuid.uuid4()), "subject": "x"})},
        )  # someone else's
    f_items = (
        await billing.client.get(
            f"/internal/v1/users/{known.users['F']}/timeline", headers=as_service("admin")
        )
    ).json()["items"]
    emails = [
        (i["kind"], i["at"][:16], i["title"]) for i in f_items if i["kind"].startswith("email")
    ]
    assert emails == [
        ("email_sent", "2020-03-15T13:00", "Email sent (renewal_failed): Your renewal failed"),
    ]
    assert [i["kind"] for i in f_items][-1] == "subscription_ended"

    e_items = (
        await billing.client.get(
            f"/internal/v1/users/{known.users['E']}/timeline", headers=as_service("admin")
        )
    ).json()["items"]
    kinds = [i["kind"] for i in e_items]
    assert kinds.index("refund_requested") < kinds.index("refund_failed")
    assert kinds[-1] == "subscription_canceled"
    refund = e_items[kinds.index("refund_requested")]
    assert refund["refund_id"] == str(known.refunds["E-r"])
    assert refund["title"] == "Refund of $2.00 asked by a manager"


async def test_recent_payments_are_newest_first_and_failed_ones_apart(billing, known):
    async def recent(**params):
        response = await billing.client.get(
            "/internal/v1/reports/recent-payments", params=params, headers=as_service("admin")
        )
        assert response.status_code == 200, response.text
        return response.json()["items"]

    newest = await recent(limit=100)
    times = [p["created_at"] for p in newest]
    assert times == sorted(times, reverse=True) and len(newest) <= 100
    failed = [p["id"] for p in await recent(limit=100, failed="true")]
    ours = [str(known.payments[n]) for n in ("F3", "D1")]  # newest first: the 15th, then the 7th
    assert [p for p in failed if p in ours] == ours
    assert str(known.payments["A1"]) not in failed
    (one,) = await recent(limit=1)
    assert one["id"] == newest[0]["id"] and "user_id" in one and "refunds" in one
    too_many = await billing.client.get(
        "/internal/v1/reports/recent-payments", params={"limit": 101}, headers=as_service("admin")
    )
    assert too_many.status_code == 422
