"""The in-memory access cache (billing.access.cache): it decides as the SQL rule does, a change
reaches every process, and nothing stale outlives the bounds it states — a lost message at most
`stale_seconds` (the channel's ping proof), any missed change at most `max_age_seconds`."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import sys
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from billing.access.cache import LISTENER_NAME, AccessCache, asyncpg_dsn
from billing.access.service import decide, decisions
from billing.outbox import commit, note_access_change
from conftest import REPO_ROOT, SERVICE_SECRET, USER_SECRET, as_service
from sqlalchemy import text

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOW = datetime(2031, 6, 15, 12, 0, tzinfo=UTC)


class FakeMonotonic:
    """The cache's monotonic clock, moved by hand (the channel's pings still run in real time)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def new_cache(database_url: str, **overrides) -> AccessCache:
    options = {
        "dsn": asyncpg_dsn(database_url),
        "max_users": 1000,
        "max_age_seconds": 3600,
        "stale_seconds": 2,
        "pool_size": 2,
        **overrides,
    }
    return AccessCache(**options)


async def insert_subscription(
    billing,
    *,
    user: uuid.UUID,
    plan: uuid.UUID,
    status: str,
    start: datetime,
    end: datetime,
    grace_until: datetime | None = None,
) -> uuid.UUID:
    """A subscription row as the purchase flow leaves it (written directly: no message)."""
    subscription_id = uuid.uuid4()
    async with billing.resources.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO subscriptions (id, user_id, plan_id, status, period_unit,"
                " period_count, refund_window_days, current_period_start, current_period_end,"
                " grace_until, auto_renew, needs_attention) VALUES (:id, :user, :plan, :status,"
                " 'month', 1, 14, :start, :end, :grace, true, false)"
            ),
            {"id": subscription_id, "user": user, "plan": plan, "status": status}
            | {"start": start, "end": end, "grace": grace_until},
        )
    return subscription_id


async def entitled_user(billing) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A film, a user paid for a plan covering it (until NOW + 30 days), the subscription."""
    film = uuid.uuid4()
    plan = await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    subscription = await insert_subscription(
        billing, user=user, plan=plan, status="active", start=NOW - timedelta(days=1),
        end=NOW + timedelta(days=30),
    )  # fmt: skip
    return film, user, subscription


async def change_status(billing, subscription_id: uuid.UUID, user: uuid.UUID, status: str) -> None:
    """A committed change with its message, as every writer makes it (billing.outbox.commit)."""
    async with billing.resources.sessionmaker() as session:
        await session.execute(
            text("UPDATE subscriptions SET status = :status WHERE id = :id"),
            {"status": status, "id": subscription_id},
        )
        note_access_change(session, user, "test change")
        await commit(session, billing.resources.access_cache)


async def in_sql(billing, user: uuid.UUID, film: uuid.UUID, now: datetime) -> bytes:
    async with billing.resources.sessionmaker() as session:
        return (await decide(session=session, user_id=user, film_id=film, now=now)).fields_json()


async def test_memory_decides_exactly_as_the_sql_rule(billing, database_url):
    """Invariant 5 from memory: random catalogs and subscriptions, every (user, film) pair."""
    rng = random.Random(13)
    films = [uuid.uuid4() for _ in range(12)]
    withdrawn = films[0]
    await billing.client.put(
        f"/internal/v1/films/{withdrawn}", json={"title": "Gone", "active": True},
        headers=as_service("etl"),
    )  # fmt: skip
    await billing.client.delete(f"/internal/v1/films/{withdrawn}", headers=as_service("etl"))
    plans = []
    for index in range(5):
        covered = rng.sample(films, 4)
        plans.append(await billing.put_plan(film_ids=[str(f) for f in covered]))
        if index == 4:
            await billing.client.delete(
                f"/internal/v1/plans/{plans[-1]}", headers=as_service("etl")
            )
    # A deactivated plan that covered everything: its paid periods still cover every film.
    all_films = await billing.put_plan(all_films=True)
    plans.append(all_films)
    users = [uuid.uuid4() for _ in range(20)]
    statuses = ["active", "canceled", "past_due", "suspended", "expired", "refunded", "incomplete"]
    try:
        for user in users:
            for plan in rng.sample(plans, rng.randint(0, 3)):
                start = NOW + timedelta(days=rng.choice([-40, -10, -1, 1]))
                end = start + timedelta(days=rng.choice([1, 5, 30]))
                status = rng.choice(statuses)
                # A renewal that did not go through: a grace after the period, running or over.
                grace = (
                    end + timedelta(days=rng.choice([1, 3, 40])) if status == "past_due" else None
                )
                await insert_subscription(
                    billing, user=user, plan=plan, status=status, start=start, end=end,
                    grace_until=grace,
                )  # fmt: skip
        seen: set[bytes] = set()
        for active_all_films in (True, False):
            if not active_all_films:
                await billing.client.delete(
                    f"/internal/v1/plans/{all_films}", headers=as_service("etl")
                )
            cache = new_cache(database_url, clock=lambda: NOW)
            try:
                assert await cache.wait_trusted(10)
                checked = 0
                for user in users:
                    memory = await cache.decisions(str(user), [str(f) for f in films])
                    for film, fields in zip(films, memory, strict=True):
                        assert fields == await in_sql(billing, user, film, NOW), (user, film)
                        checked += 1
                        seen.add(fields)
                assert checked == len(users) * len(films)
                assert cache.counters.fill_queries == len(users)  # one query per user
                assert cache.counters.catalog_loads == 1
            finally:
                await cache.aclose()
        reasons = {fields.split(b'"reason":"')[1].split(b'"')[0] for fields in seen}
        expected = {b"subscription", b"grace", b"free", b"no_subscription", b"film_unavailable"}
        assert reasons == expected  # every kind of answer was compared
    finally:
        await billing.client.delete(f"/internal/v1/plans/{all_films}", headers=as_service("etl"))


async def test_a_period_stops_counting_at_its_end_without_any_message(billing, database_url):
    film = uuid.uuid4()
    plan = await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    end = NOW + timedelta(minutes=5)
    await insert_subscription(
        billing, user=user, plan=plan, status="active", start=NOW - timedelta(days=1), end=end
    )
    now = [NOW]
    cache = new_cache(database_url, clock=lambda: now[0])
    try:
        assert await cache.wait_trusted(10)
        (before,) = await cache.decisions(str(user), [str(film)])
        assert b'"allowed":true' in before and end.isoformat().encode() in before
        now[0] = end
        assert cache.cached(str(user), str(film)) == await in_sql(billing, user, film, end)
        assert b'"reason":"no_subscription"' in cache.cached(str(user), str(film))
        assert cache.counters.fill_queries == 1  # the same entry, no second read
    finally:
        await cache.aclose()


async def test_a_lost_message_leaves_nothing_stale_beyond_the_stale_bound(billing, database_url):
    """Messages lost (the channel silently drops them, pings included): memory may answer the
    old "allowed" only until its last proof is `stale_seconds` old; then PostgreSQL answers."""
    film, user, subscription = await entitled_user(billing)
    clock = FakeMonotonic()
    cache = new_cache(database_url, clock=lambda: NOW, monotonic=clock, stale_seconds=2)
    try:
        assert await cache.wait_trusted(10)
        (allowed,) = await cache.decisions(str(user), [str(film)])
        assert b'"allowed":true' in allowed

        cache.drop_messages = True  # from here on, every message is lost
        await change_status(billing, subscription, user, "refunded")
        truth = await in_sql(billing, user, film, NOW)
        assert b'"allowed":false' in truth
        # Within the bound the lost message leaves the old answer (what the bound is about).
        assert cache.cached(str(user), str(film)) == allowed
        clock.now += 2.5  # the last proof is now older than stale_seconds
        assert not cache.trusted()
        assert cache.cached(str(user), str(film)) is None
        answers = cache.counters.database_answers
        response = await billing.client.get(  # the app's own cache got the change; ask ours
            f"/internal/v1/access?user_id={user}&film_id={film}", headers=as_service("movies")
        )
        assert response.json()["allowed"] is False
        (answer,) = await decisions(
            sessionmaker=billing.resources.sessionmaker,
            cache=cache,
            user_id=str(user),
            film_ids=[str(film)],
        )
        assert answer == truth and cache.counters.database_answers == answers + 1

        # Messages flow again: the channel is proven again (a reconnect drops everything first).
        cache.drop_messages = False
        assert await cache.wait_trusted(15)
        assert (await cache.decisions(str(user), [str(film)])) == [truth]
    finally:
        await cache.aclose()


async def test_any_missed_change_is_read_again_within_the_max_age(billing, database_url):
    """A change that sent no message at all (written directly): the entry is read again at most
    `max_age_seconds` after its read, while the channel stays trusted."""
    film, user, subscription = await entitled_user(billing)
    clock = FakeMonotonic()
    cache = new_cache(
        database_url, clock=lambda: NOW, monotonic=clock, stale_seconds=1000, max_age_seconds=5
    )
    try:
        assert await cache.wait_trusted(10)
        (allowed,) = await cache.decisions(str(user), [str(film)])
        async with billing.resources.engine.begin() as conn:  # no message
            await conn.execute(
                text("UPDATE subscriptions SET status = 'refunded' WHERE id = :id"),
                {"id": subscription},
            )
        clock.now += 4.9
        assert cache.cached(str(user), str(film)) == allowed  # held, within the age cap
        clock.now += 0.2
        assert cache.trusted() and cache.cached(str(user), str(film)) is None
        (fresh,) = await cache.decisions(str(user), [str(film)])
        assert fresh == await in_sql(billing, user, film, NOW) and b'"allowed":false' in fresh
        assert cache.counters.resets == 1  # only the first LISTEN's: the age cap did it
    finally:
        await cache.aclose()


async def test_a_change_during_a_fill_is_never_stored(billing, database_url):
    """The fill's query is held (a table lock) while the change commits and its message arrives:
    the fill answers its waiter but is not kept, so the next check reads the new rows."""
    film, user, subscription = await entitled_user(billing)
    cache = new_cache(database_url, clock=lambda: NOW)
    blocker = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        assert await cache.wait_trusted(10)
        await cache.decisions(str(uuid.uuid4()), [str(film)])  # catalog loaded
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE subscriptions IN ACCESS EXCLUSIVE MODE")
        fill = asyncio.ensure_future(cache.decisions(str(user), [str(film)]))
        for _ in range(200):  # until the fill's query waits for the lock
            waiting = await blocker.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND application_name = 'billing-access-fill'"
            )
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting, "the fill never reached the database"
        # The change commits after the fill's snapshot... (the message arrives during the fill)
        cache.on_notification(f"u:{user}")
        await transaction.rollback()
        (answer,) = await fill
        assert b'"allowed":true' in answer  # its waiter asked before the change: fine
        assert str(user) not in cache._users  # ...and is not kept
        await change_status(billing, subscription, user, "refunded")
        (after,) = await cache.decisions(str(user), [str(film)])
        assert b'"allowed":false' in after
    finally:
        await blocker.close()
        await cache.aclose()


async def test_a_cut_listening_connection_drops_everything_and_heals(billing, database_url):
    cache = new_cache(database_url, clock=lambda: NOW)
    film = uuid.uuid4()
    await billing.put_plan(film_ids=[str(film)])
    try:
        assert await cache.wait_trusted(10)
        await cache.decisions(str(uuid.uuid4()), [str(film)])
        assert cache.state()["users"] == 1
        async with billing.resources.engine.begin() as conn:
            cut = await conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = :name AND datname = current_database()"
                ),
                {"name": LISTENER_NAME},
            )
        assert cut >= 1
        for _ in range(500):
            if cache.counters.resets >= 2:
                break
            await asyncio.sleep(0.01)
        assert cache.counters.resets >= 2 and cache.state()["users"] == 0
        assert await cache.wait_trusted(15)
    finally:
        await cache.aclose()


async def test_the_user_bound_holds(billing, database_url):
    film = uuid.uuid4()
    await billing.put_plan(film_ids=[str(film)])
    cache = new_cache(database_url, max_users=3)
    try:
        assert await cache.wait_trusted(10)
        users = [str(uuid.uuid4()) for _ in range(5)]
        await asyncio.gather(*(cache.decisions(user, [str(film)]) for user in users))
        assert cache.counters.fill_queries == 1  # five users asked at once, one query
        for user in users:
            await cache.decisions(user, [str(film)])
        state = cache.state()
        assert state["users"] == 3 and state["max_users"] == 3
        assert state["counters"]["evictions"] >= 2
    finally:
        await cache.aclose()


async def test_batch_answers_what_the_single_check_answers(billing):
    films = [uuid.uuid4() for _ in range(4)]
    plan = await billing.put_plan(film_ids=[str(f) for f in films[:2]])
    await billing.client.put(
        f"/internal/v1/films/{films[1]}", json={"title": "Gone", "active": True},
        headers=as_service("etl"),
    )  # fmt: skip
    await billing.client.delete(f"/internal/v1/films/{films[1]}", headers=as_service("etl"))
    payer, stranger = uuid.uuid4(), uuid.uuid4()
    await billing.paid_subscription(payer, plan)
    asked = [*films, films[0]]  # a film twice: answered twice, in order
    for user in (payer, stranger):
        response = await billing.client.post(
            "/internal/v1/access/batch",
            json={"user_id": str(user), "film_ids": [str(f) for f in asked]},
            headers=as_service("movies"),
        )
        assert response.status_code == 200, response.text
        batch = response.json()
        assert batch["user_id"] == str(user)
        singles = [
            (
                await billing.client.get(
                    f"/internal/v1/access?user_id={user}&film_id={film}",
                    headers=as_service("movies"),
                )
            ).json()
            for film in asked
        ]
        assert batch["access"] == singles
    reasons = [a["reason"] for a in batch["access"]]
    assert reasons == ["no_subscription", "film_unavailable", "free", "free", "no_subscription"]

    too_many = {"user_id": str(payer), "film_ids": [str(uuid.uuid4()) for _ in range(101)]}
    for body, headers, status, code in (
        (too_many, as_service("movies"), 422, "validation_error"),
        ({"user_id": "x", "film_ids": []}, as_service("movies"), 422, "validation_error"),
        ({"user_id": str(payer), "film_ids": ["y"]}, as_service("movies"), 422, "validation_error"),
        ({"user_id": str(payer)}, as_service("movies"), 422, "validation_error"),
        ({"user_id": str(payer), "film_ids": []}, as_service("etl"), 403, "forbidden"),
        ({"user_id": str(payer), "film_ids": []}, {}, 401, "not_authenticated"),
    ):
        refused = await billing.client.post("/internal/v1/access/batch", json=body, headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (status, code)
    empty = await billing.client.post(
        "/internal/v1/access/batch",
        json={"user_id": str(payer), "film_ids": []},
        headers=as_service("movies"),
    )
    assert empty.json() == {"user_id": str(payer), "access": []}


# --- several processes --------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_file(path):
    return path.open("wb")  # closed with the process


async def _start_billing_process(database_url: str, pay_api_url: str, log_path) -> tuple:
    port = _free_port()
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": database_url,
        "AUTH_JWT_SECRET": USER_SECRET,
        "AUTH_JWT_AUDIENCE": "cinema",
        "SERVICE_JWT_SECRET": SERVICE_SECRET,
        "PAY_API_URL": pay_api_url,
        # Far beyond the test: only a message can make these processes read a user again.
        "BILLING_ACCESS_CACHE_MAX_SECONDS": "3600",
        "BILLING_ACCESS_STALE_SECONDS": "30",
    }
    log = _log_file(log_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "billing.main:app", "--host", "127.0.0.1",
        "--port", str(port), "--no-access-log",
        cwd=REPO_ROOT, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)
    for _ in range(300):
        try:
            if (await client.get("/health")).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.returncode is None, log_path.read_text()
        await asyncio.sleep(0.05)
    return process, client, log


async def _state(client: httpx.AsyncClient) -> dict:
    response = await client.get("/internal/v1/access/cache", headers=as_service("movies"))
    assert response.status_code == 200, response.text
    return response.json()


async def _access(client: httpx.AsyncClient, user: uuid.UUID, film: uuid.UUID) -> dict:
    url = f"/internal/v1/access?user_id={user}&film_id={film}"
    response = await client.get(url, headers=as_service("movies"))
    assert response.status_code == 200, response.text
    return response.json()


async def _until(client, user, film, reason: str) -> dict:
    for _ in range(500):
        answer = await _access(client, user, film)
        if answer["reason"] == reason:
            return answer
        await asyncio.sleep(0.02)
    return answer


async def test_a_change_reaches_every_billing_process(
    billing, database_url, fake_pay_api, tmp_path
):
    """Two real billing processes hold a user and the catalog in memory; a change committed by a
    third (this test's app) reaches both by its message, not by age nor by a database fallback."""
    film = uuid.uuid4()
    plan = await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    await billing.paid_subscription(user, plan)
    subscription = await billing.scalar("SELECT id FROM subscriptions WHERE user_id = :u", u=user)
    started = [
        await _start_billing_process(database_url, fake_pay_api.url, tmp_path / f"b{n}.log")
        for n in (1, 2)
    ]
    clients = [client for _, client, _ in started]
    try:
        for client in clients:
            for _ in range(500):
                if (await _state(client))["trusted"]:
                    break
                await asyncio.sleep(0.02)
            assert (await _access(client, user, film))["reason"] == "subscription"
            assert (await _access(client, user, film))["reason"] == "subscription"
        before = [(await _state(client))["counters"] for client in clients]
        assert all(c["hits"] >= 1 and c["database_answers"] == 0 for c in before)
        assert len({(await _state(client))["pid"] for client in clients}) == 2

        # A user's change (a refund ends the subscription), committed elsewhere.
        await change_status(billing, subscription, user, "refunded")
        for client in clients:
            assert (await _until(client, user, film, "no_subscription"))["allowed"] is False

        # A catalog change (the plan no longer covers the film): the film is free everywhere.
        await billing.put_plan(plan_id=plan, film_ids=[])
        for client in clients:
            assert (await _until(client, user, film, "free"))["allowed"] is True

        after = [(await _state(client))["counters"] for client in clients]
        for old, new in zip(before, after, strict=True):
            assert new["database_answers"] == 0  # memory answered throughout
            assert new["invalidations"] >= old["invalidations"] + 2
            assert new["resets"] == old["resets"]  # no reconnect did it
    finally:
        for process, client, log in started:
            await client.aclose()
            process.terminate()
            await process.wait()
            log.close()
