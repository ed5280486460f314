"""Access decisions from memory: each process keeps the catalog and the users it has seen, and
PostgreSQL tells every process what changed (LISTEN/NOTIFY).

What is kept (per process):
    the catalog      plan→films, plans covering everything, withdrawn films (one load, 3 queries)
    users            each user's paid periods (`Period`s), at most `max_users`, least recently
                     used first out; a user never seen is filled by ONE indexed query, and users
                     asked for in the same loop iteration share that query (`user_id = ANY($1)`)

How it stays true:
* **Push.** A transaction that changes a user's subscriptions (or the catalog) sends
  `pg_notify('billing_access', 'u:<user>' | 'c')` inside itself (`billing.outbox.commit`), so the
  message exists exactly when the change committed. Every process LISTENs and drops what it names.
* **No fill can store old data.** A fill is registered before its query runs; a message that
  arrives while it runs marks it invalid, and its result then answers only the requests that were
  waiting for it (they started before the message) and is not stored.
* **Proof the channel works (the stale bound).** Every `stale_seconds / 4` a process notifies its
  own ping on the same channel. PostgreSQL delivers notifications in commit order, so receiving ping
  n proves that every change committed before ping n was sent has been applied here. Memory is used
  only while the last proof is at most `stale_seconds` old; otherwise the check reads PostgreSQL (the
  same rule in SQL, `service.decide`). A new LISTEN connection drops everything first (messages
  sent while none listened are lost), and so does a proof that comes after trust had lapsed. So a message lost with its connection — the only way
  PostgreSQL loses a committed notification — leaves no stale answer older than `stale_seconds`.
* **Age cap, whatever else fails.** Every entry (a user's, the catalog) is read again at most
  `max_age_seconds` after its query started: even a change that sent no message at all is seen
  within that bound.
* Expiry needs no message: periods carry their end and decisions compare it with the clock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import asyncpg

from billing.access.entitlements import ENTITLING_STATUSES, Catalog, Period, decide, periods_of
from billing.db import utcnow

logger = logging.getLogger(__name__)

CHANNEL = "billing_access"
LISTENER_NAME = "billing-access-listen"  # application_name of the listening connection
# One statement notifies every payload of a transaction (NOTIFY folds duplicates in a transaction).
NOTIFY_SQL = "SELECT pg_notify('billing_access', p) FROM unnest(CAST(:payloads AS text[])) AS p"
_FILL_SQL = (
    "SELECT user_id, plan_id, status, current_period_start, current_period_end, grace_until"
    " FROM subscriptions WHERE user_id = ANY($1::uuid[]) AND status = ANY($2::text[])"
)
_PLANS_SQL = "SELECT id, active, all_films FROM plans"
_PLAN_FILMS_SQL = "SELECT plan_id, film_id FROM plan_films"
_WITHDRAWN_SQL = "SELECT id FROM films WHERE NOT active"
_MAX_USERS_PER_QUERY = 500


def user_payload(user_id: uuid.UUID | str) -> str:
    return f"u:{user_id}"


CATALOG_PAYLOAD = "c"


@dataclass
class AccessCounters:
    """Plain counters a metrics endpoint can read (never reset; one set per process)."""

    hits: int = 0  # decisions answered from memory without any query
    user_fills: int = 0  # users read from PostgreSQL into memory
    fill_queries: int = 0  # queries those fills took (several users share one)
    catalog_loads: int = 0
    database_answers: int = 0  # decisions made in SQL while memory was not trusted
    invalidations: int = 0  # messages applied (users and catalog)
    evictions: int = 0  # users dropped by the bound
    resets: int = 0  # everything dropped (a new LISTEN connection)


class _Fill:
    """A query in flight for one key; `valid` turns False when a message names the key."""

    __slots__ = ("future", "started", "valid")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future = loop.create_future()
        self.future.add_done_callback(_retrieve)
        self.started = False
        self.valid = True


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # its waiters may all be gone; no "never retrieved" warning


def asyncpg_dsn(database_url: str) -> str:
    """billing's SQLAlchemy URL (postgresql+asyncpg://…) as a plain libpq/asyncpg DSN."""
    from sqlalchemy.engine import make_url

    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class AccessCache:
    """Catalog and users in memory, kept true by LISTEN/NOTIFY (see the module docstring)."""

    def __init__(
        self,
        *,
        dsn: str,
        max_users: int,
        max_age_seconds: float,
        stale_seconds: float,
        pool_size: int,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dsn = dsn
        self._max_users = max_users
        self._max_age = max_age_seconds
        self._stale = stale_seconds
        self._pool_size = pool_size
        self.clock = clock
        self._monotonic = monotonic
        self.counters = AccessCounters()
        self._users: OrderedDict[str, tuple[tuple[Period, ...], float]] = OrderedDict()
        self._fills: dict[str, _Fill] = {}
        self._batch: dict[str, _Fill] = {}
        self._catalog: tuple[Catalog, float] | None = None
        self._catalog_fill: _Fill | None = None
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._token = uuid.uuid4().hex[:12]
        self._pings: dict[int, float] = {}
        # Monotonic time up to which every committed change is known to be applied here.
        self._confirmed_at = -math.inf
        # Fault switch for the tests of the stale bound: drop every message as if lost.
        self.drop_messages = False

    # --- the hot path -------------------------------------------------------------------------
    def trusted(self) -> bool:
        """Whether memory may answer: the channel was proven within `stale_seconds`."""
        return self._monotonic() - self._confirmed_at <= self._stale

    def cached(self, user_id: str, film_id: str) -> bytes | None:
        """The decision's fields from memory alone, or None (not held, too old, not trusted)."""
        now = self._monotonic()
        if now - self._confirmed_at > self._stale:
            return None
        catalog, entry = self._catalog, self._users.get(user_id)
        if catalog is None or entry is None:
            return None
        if now - entry[1] > self._max_age or now - catalog[1] > self._max_age:
            return None
        self._users.move_to_end(user_id)
        self.counters.hits += 1
        return decide(catalog[0], entry[0], film_id, self.clock())

    async def decisions(self, user_id: str, film_ids: list[str]) -> list[bytes] | None:
        """Decisions for one user and these films, filling what memory lacks; None when memory
        is not trusted (the caller asks PostgreSQL)."""
        self.start()
        if not self.trusted():
            return None
        catalog = await self._current_catalog()
        periods = await self._periods(user_id)
        now = self.clock()
        return [decide(catalog, periods, film_id, now) for film_id in film_ids]

    def state(self) -> dict[str, Any]:
        """What an operator (or a metrics exporter) reads about this process's cache."""
        return {
            "pid": os.getpid(),
            "trusted": self.trusted(),
            "users": len(self._users),
            "max_users": self._max_users,
            "catalog_loaded": self._catalog is not None,
            "counters": asdict(self.counters),
        }

    # --- invalidation ---------------------------------------------------------------------------
    def invalidate(
        self, *, users: Iterable[uuid.UUID | str] = (), everything: bool = False
    ) -> None:
        """Forget these users (and the catalog): the next check reads them again."""
        for user in users:
            self._forget_user(str(user))
        if everything:
            self._forget_catalog()

    def _forget_user(self, user_id: str) -> None:
        self.counters.invalidations += 1
        self._users.pop(user_id, None)
        fill = self._fills.get(user_id)
        if fill is not None and fill.started:
            # Its query may have read the old rows: answer its waiters, store nothing.
            fill.valid = False
            del self._fills[user_id]

    def _forget_catalog(self) -> None:
        self.counters.invalidations += 1
        self._catalog = None
        if self._catalog_fill is not None:
            self._catalog_fill.valid = False
            self._catalog_fill = None

    def reset(self) -> None:
        """Forget everything (messages may have been lost)."""
        self.counters.resets += 1
        self._users.clear()
        for fill in self._fills.values():
            if fill.started:
                fill.valid = False
        self._fills = {user: fill for user, fill in self._fills.items() if not fill.started}
        self._forget_catalog()

    def on_notification(self, payload: str) -> None:
        """One message of the channel: a user, the catalog, or a ping."""
        if self.drop_messages:
            return
        kind, _, rest = payload.partition(":")
        if kind == "u":
            self._forget_user(rest)
        elif kind == "c":
            self._forget_catalog()
        elif kind == "p":
            token, _, number = rest.partition(":")
            if token == self._token:
                self._confirm(int(number))

    def _confirm(self, number: int) -> None:
        sent_at = self._pings.get(number)
        if sent_at is None:
            return
        for older in [n for n in self._pings if n <= number]:
            del self._pings[older]
        lapsed = self._monotonic() - self._confirmed_at > self._stale
        if lapsed and self._confirmed_at != -math.inf:
            # Trust had lapsed (no proof for too long): what is held may have missed messages.
            self.reset()
        self._confirmed_at = max(self._confirmed_at, sent_at)

    # --- fills ------------------------------------------------------------------------------------
    async def _periods(self, user_id: str) -> tuple[Period, ...]:
        entry = self._users.get(user_id)
        if entry is not None and self._monotonic() - entry[1] <= self._max_age:
            self._users.move_to_end(user_id)
            self.counters.hits += 1
            return entry[0]
        fill = self._fills.get(user_id)
        if fill is None:
            loop = asyncio.get_running_loop()
            fill = self._fills[user_id] = _Fill(loop)
            if not self._batch:
                loop.call_soon(self._flush_batch)
            self._batch[user_id] = fill
        return await asyncio.shield(fill.future)

    def _flush_batch(self) -> None:
        batch, self._batch = self._batch, {}
        users = list(batch.items())
        for start in range(0, len(users), _MAX_USERS_PER_QUERY):
            part = dict(users[start : start + _MAX_USERS_PER_QUERY])
            for fill in part.values():
                fill.started = True
            self._spawn(self._fill_users(part))

    async def _fill_users(self, batch: dict[str, _Fill]) -> None:
        started_at = self._monotonic()
        try:
            pool = await self._get_pool()
            async with pool.acquire() as connection:
                rows = await connection.fetch(_FILL_SQL, list(batch), list(ENTITLING_STATUSES))
        except BaseException as exc:
            for user_id, fill in batch.items():
                if self._fills.get(user_id) is fill:
                    del self._fills[user_id]
                fill.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self.counters.fill_queries += 1
        by_user: dict[str, list[Any]] = {}
        for row in rows:
            by_user.setdefault(str(row[0]), []).append(row[1:])
        for user_id, fill in batch.items():
            periods = periods_of(by_user.get(user_id, ()))
            self.counters.user_fills += 1
            if fill.valid:
                self._store_user(user_id, periods, started_at)
            if self._fills.get(user_id) is fill:
                del self._fills[user_id]
            fill.future.set_result(periods)

    def _store_user(self, user_id: str, periods: tuple[Period, ...], filled_at: float) -> None:
        self._users[user_id] = (periods, filled_at)
        self._users.move_to_end(user_id)
        while len(self._users) > self._max_users:
            self._users.popitem(last=False)
            self.counters.evictions += 1

    async def _current_catalog(self) -> Catalog:
        held = self._catalog
        if held is not None and self._monotonic() - held[1] <= self._max_age:
            return held[0]
        fill = self._catalog_fill
        if fill is None:
            fill = self._catalog_fill = _Fill(asyncio.get_running_loop())
            fill.started = True
            self._spawn(self._load_catalog(fill))
        return await asyncio.shield(fill.future)

    async def _load_catalog(self, fill: _Fill) -> None:
        started_at = self._monotonic()
        try:
            pool = await self._get_pool()
            async with pool.acquire() as connection:
                async with connection.transaction(isolation="repeatable_read", readonly=True):
                    plans = await connection.fetch(_PLANS_SQL)
                    plan_films = await connection.fetch(_PLAN_FILMS_SQL)
                    withdrawn = await connection.fetch(_WITHDRAWN_SQL)
        except BaseException as exc:
            if self._catalog_fill is fill:
                self._catalog_fill = None
            fill.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        catalog = Catalog.build(
            plans=[tuple(row) for row in plans],
            plan_films=[tuple(row) for row in plan_films],
            withdrawn_films=[row[0] for row in withdrawn],
        )
        self.counters.catalog_loads += 1
        if fill.valid:
            self._catalog = (catalog, started_at)
        if self._catalog_fill is fill:
            self._catalog_fill = None
        fill.future.set_result(catalog)

    # --- the channel --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start listening (once per process, on the first check; the worker never does)."""
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen_forever())

    async def wait_trusted(self, within: float) -> bool:
        """Start listening and wait until memory may answer (tests, and a warm start)."""
        self.start()
        deadline = time.monotonic() + within
        while not self.trusted():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                server_settings={"application_name": "billing-access-fill"},
            )
            if self._pool is None:
                self._pool = pool
            else:
                await pool.close()
        return self._pool

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _listen_forever(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._listen_once()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("access invalidation channel lost; reconnecting", exc_info=True)
            finally:
                self._confirmed_at = -math.inf  # not trusted until a ping proves it again
                self.reset()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _listen_once(self) -> None:
        interval = self._stale / 4
        connection = await asyncpg.connect(
            self._dsn,
            timeout=self._stale,
            server_settings={"application_name": LISTENER_NAME},
        )
        lost = asyncio.Event()
        try:
            connection.add_termination_listener(lambda _c: lost.set())
            await connection.add_listener(
                CHANNEL, lambda _c, _p, _ch, msg: self.on_notification(msg)
            )
            # Messages sent before LISTEN took effect are not ours to see: start empty.
            self.reset()
            listening_since = self._monotonic()
            number = 0
            while not lost.is_set():
                number += 1
                self._pings[number] = self._monotonic()
                await connection.execute(
                    "SELECT pg_notify($1, $2)",
                    CHANNEL,
                    f"p:{self._token}:{number}",
                    timeout=self._stale,
                )
                try:
                    await asyncio.wait_for(lost.wait(), interval)
                except TimeoutError:
                    pass
                proven = max(self._confirmed_at, listening_since)
                if self._monotonic() - proven > 2 * self._stale:
                    raise ConnectionError("no ping came back; the listening connection is stale")
        finally:
            connection.terminate()

    async def aclose(self) -> None:
        tasks = [t for t in (self._listener, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
