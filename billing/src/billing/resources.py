"""Long-lived objects of a process (API or worker): engines, Redis, the pay_api client."""

from __future__ import annotations

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing.access.cache import AccessCache
from billing.access.fastredis import PipelinedRedis
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
        self.redis = Redis.from_url(settings.redis_url)
        self.redis_reader = PipelinedRedis(settings.redis_url)
        self.access_cache = AccessCache(
            self.redis,
            self.redis_reader,
            prefix=settings.redis_prefix,
            max_ttl_seconds=settings.access_cache_max_seconds,
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
        await self.redis.aclose()
        self.redis_reader.close()
        await self.engine.dispose()
        await self.idempotency_engine.dispose()
