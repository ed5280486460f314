"""Access decisions: paid period of a covering plan, free films, the cache and its invalidation."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
import pytest
from billing.access.fastredis import encode_command, parse_reply
from billing.main import create_app
from conftest import REDIS_PREFIX, as_service, as_user, bearer, make_settings, user_token

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_covered_film_needs_a_paid_period_free_film_is_free(billing):
    film, free_film = uuid.uuid4(), uuid.uuid4()
    plan_id = await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    denied = await billing.access(user, film)
    assert denied == {
        "allowed": False,
        "reason": "no_subscription",
        "until": None,
        "film_id": str(film),
        "user_id": str(user),
    }
    assert await billing.access(user, free_film) == {
        "allowed": True,
        "reason": "free",
        "until": None,
        "film_id": str(free_film),
        "user_id": str(user),
    }

    purchase = await billing.paid_subscription(user, plan_id)
    allowed = await billing.access(user, film)
    assert allowed["allowed"] is True and allowed["reason"] == "subscription"
    sub_end = await billing.scalar(
        "SELECT current_period_end FROM subscriptions WHERE id = :s",
        s=uuid.UUID(purchase["subscription"]["id"]),
    )
    assert datetime.fromisoformat(allowed["until"]) == sub_end
    # Another user is still denied.
    assert (await billing.access(uuid.uuid4(), film))["allowed"] is False


async def test_decisions_are_cached_in_redis_and_served_from_there(billing):
    film = uuid.uuid4()
    await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    first = await billing.access(user, film)
    redis = billing.resources.redis
    key = f"{REDIS_PREFIX}acc:d:{user}:{film}"
    cached = await redis.get(key)
    assert cached is not None and b'"reason":"no_subscription"' in cached
    ttl = await redis.ttl(key)
    assert 0 < ttl <= billing.resources.settings.access_cache_max_seconds
    # Served from the cache: the database is not needed for a repeat (the stored entry answers).
    await redis.set(
        key, cached.replace(b"no_subscription", b"free").replace(b"false", b"true"), keepttl=True
    )
    assert (await billing.access(user, film))["reason"] == "free"
    assert first["reason"] == "no_subscription"


async def test_cache_is_invalidated_by_a_payment_and_by_catalog_changes(billing):
    film = uuid.uuid4()
    plan_id = await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    assert (await billing.access(user, film))["allowed"] is False  # cached "denied"
    await billing.paid_subscription(user, plan_id)
    assert (await billing.access(user, film))["allowed"] is True  # the payment dropped it

    # A free film becomes covered by a new plan: cached "free" decisions are dropped for all.
    newly_covered = uuid.uuid4()
    assert (await billing.access(user, newly_covered))["reason"] == "free"
    await billing.put_plan(film_ids=[str(newly_covered)])
    assert (await billing.access(user, newly_covered))["reason"] == "no_subscription"


async def test_all_films_plan_covers_everything_and_deactivation_keeps_paid_access(billing):
    plan_id = await billing.put_plan(all_films=True)
    user, film = uuid.uuid4(), uuid.uuid4()
    assert (await billing.access(user, film))["reason"] == "no_subscription"
    await billing.paid_subscription(user, plan_id)
    assert (await billing.access(user, film))["reason"] == "subscription"
    await billing.client.delete(f"/internal/v1/plans/{plan_id}", headers=as_service("etl"))
    assert (await billing.access(user, film))["reason"] == "subscription"


async def test_internal_access_for_the_movie_service(billing):
    film = uuid.uuid4()
    plan_id = await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    await billing.paid_subscription(user, plan_id)
    url = f"/internal/v1/access?user_id={user}&film_id={film}"
    response = await billing.client.get(url, headers=as_service("movies"))
    assert response.status_code == 200
    assert response.json()["allowed"] is True
    assert response.json()["user_id"] == str(user)
    for headers, status, code in (
        (as_service("etl"), 403, "forbidden"),
        (as_user(user), 401, "token_invalid"),
        ({}, 401, "not_authenticated"),
    ):
        refused = await billing.client.get(url, headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (status, code)
    for query in (f"user_id={user}", f"user_id=x&film_id={film}", f"user_id={user}&film_id=y"):
        bad = await billing.client.get(f"/internal/v1/access?{query}", headers=as_service("movies"))
        assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")


async def test_user_access_endpoint_refuses_bad_input(billing):
    user = uuid.uuid4()
    bad = await billing.client.get("/api/v1/access/films/not-a-uuid", headers=as_user(user))
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")
    for headers, code in (
        ({}, "not_authenticated"),
        (bearer(user_token(user, exp=1)), "token_expired"),
        (as_service("movies"), "token_invalid"),
    ):
        refused = await billing.client.get(f"/api/v1/access/films/{uuid.uuid4()}", headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (401, code)


async def test_redis_down_the_database_answers(database_url, fake_pay_api, billing):
    film = uuid.uuid4()
    plan_id = await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    await billing.paid_subscription(user, plan_id)
    # The same database, but Redis unreachable (a closed port).
    broken = create_app(
        make_settings(database_url, fake_pay_api.url, REDIS_URL="redis://127.0.0.1:1/0"),
        configure_logs=False,
    )
    transport = httpx.ASGITransport(app=broken)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as c:
        mine = await c.get(f"/api/v1/access/films/{film}", headers=as_user(user))
        assert mine.status_code == 200 and mine.json()["allowed"] is True
        other = await c.get(f"/api/v1/access/films/{film}", headers=as_user(uuid.uuid4()))
        assert other.json()["reason"] == "no_subscription"
        service = await c.get(
            f"/internal/v1/access?user_id={user}&film_id={film}", headers=as_service("movies")
        )
        assert service.json()["allowed"] is True
    await broken.state.resources.aclose()


async def test_pipelined_reader_parses_replies_split_across_reads():
    assert encode_command("MGET", "a", "bc") == b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$2\r\nbc\r\n"
    reply = b"*3\r\n$-1\r\n$2\r\n17\r\n$5\r\nhe\r\nl\r\n+OK\r\n"
    for cut in range(1, len(reply) - 5):
        buffer = bytearray(reply[:cut])
        try:
            value, _ = parse_reply(buffer, 0)
        except Exception as exc:  # incomplete until the whole array is there
            assert type(exc).__name__ == "_Incomplete"
        else:
            assert cut >= len(reply) - 5
            assert value == [None, b"17", b"he\r\nl"]
    value, pos = parse_reply(bytearray(reply), 0)
    assert value == [None, b"17", b"he\r\nl"]
    assert parse_reply(bytearray(reply), pos) == (b"OK", len(reply))


async def test_a_withdrawn_film_is_allowed_to_nobody(billing):
    film = uuid.uuid4()
    put = await billing.client.put(
        f"/internal/v1/films/{film}",
        json={"title": "Metropolis", "active": True},
        headers=as_service("etl"),
    )
    assert put.status_code == 200
    plan_id = await billing.put_plan(film_ids=[str(film)])
    user = uuid.uuid4()
    await billing.paid_subscription(user, plan_id)
    assert (await billing.access(user, film))["reason"] == "subscription"  # cached "allowed"

    deleted = await billing.client.delete(f"/internal/v1/films/{film}", headers=as_service("etl"))
    assert deleted.status_code == 200 and deleted.json()["changed"] is True
    withdrawn = await billing.access(user, film)
    assert withdrawn["allowed"] is False and withdrawn["reason"] == "film_unavailable"
    stranger = await billing.access(uuid.uuid4(), film)
    assert stranger["allowed"] is False and stranger["reason"] == "film_unavailable"


async def test_a_stalled_redis_fails_fast_so_access_falls_back_to_the_database():
    """A Redis that accepts the connection and never answers: the read gives up within its
    timeout (a RedisError, which the access check answers from PostgreSQL) and drops the socket."""
    import asyncio

    from billing.access.fastredis import PipelinedRedis
    from redis.exceptions import RedisError

    accepted = []

    async def silent(reader, writer):
        accepted.append(writer)
        await reader.read()  # never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    try:
        with pytest.raises(RedisError):
            await reader.mget("acc:gv", "acc:uv:x")
        assert accepted, "the read did reach the silent server"
        with pytest.raises(RedisError):  # the next call reconnects and times out again
            await reader.mget("acc:gv")
        assert len(accepted) == 2
    finally:
        reader.close()
        server.close()
