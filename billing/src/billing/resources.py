"""Long-lived objects of a process (API or worker): engines, Redis, the access cache, the pay_api
client."""

from __future__ import annotations

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing.access.cache import AccessCache, asyncpg_dsn
from billing.auth import TokenVerifier
from billing.config import Settings
from billing.db import make_engine, make_sessionmaker
from billing.pay_api import PayApiClient


class Resources:
    """Built once per process; nothing connects until first used."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: AsyncEngine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        self.sessionmaker: async_sessionmaker[AsyncSession] = make_sessionmaker(self.engine)
        # A keyed (Idempotency-Key) request holds one connection of this pool for its whole run,
        # while its work commits on the main pool: separate pools, so waiters never starve it.
        self.idempotency_engine: AsyncEngine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        self.idempotency_sessionmaker = make_sessionmaker(self.idempotency_engine)
        self.redis = Redis.from_url(settings.redis_url)  # the test clock's offset (billing.clock)
        # Access decisions from memory, kept true through PostgreSQL notifications.
        self.access_cache = AccessCache(
            dsn=asyncpg_dsn(settings.database_url),
            max_users=settings.access_cache_users,
            max_age_seconds=settings.access_cache_max_seconds,
            stale_seconds=settings.access_stale_seconds,
            pool_size=settings.access_db_pool_size,
        )
        self.verifier = TokenVerifier(settings)
        self.pay_api = PayApiClient(
            base_url=settings.pay_api_url,
            secret=settings.service_jwt_secret,
            connect_timeout=settings.pay_api_connect_timeout,
            timeout=settings.pay_api_timeout,
        )

    async def aclose(self) -> None:
        await self.pay_api.aclose()
        await self.access_cache.aclose()
        await self.redis.aclose()
        await self.engine.dispose()
        await self.idempotency_engine.dispose()
