"""The billing API: `uvicorn billing.main:app`.

`app` is built on first access (PEP 562 module `__getattr__`), so importing this module reads no
environment; tests build their own with `create_app(settings)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from billing.access.fastpath import AccessFastPath
from billing.access.router import router as access_router
from billing.clock import ClockSync
from billing.config import Settings, get_settings
from billing.errors import install_error_handlers
from billing.guard import InputGuard
from billing.health import router as health_router
from billing.internal.access import router as internal_access_router
from billing.internal.admin import router as internal_admin_router
from billing.internal.catalog import router as internal_catalog_router
from billing.internal.clock import router as internal_clock_router
from billing.internal.events import router as internal_events_router
from billing.internal.promotions import router as internal_promotions_router
from billing.internal.renewals import router as internal_renewals_router
from billing.log import RequestIdMiddleware, configure_logging
from billing.metrics import RequestMetrics
from billing.payments.router import router as payments_router
from billing.plans.router import router as plans_router
from billing.promotions.router import router as promotions_router
from billing.ratelimit import RateLimits
from billing.refunds.router import router as refunds_router
from billing.reports.router import router as reports_router
from billing.resources import Resources
from billing.subscriptions.router import router as subscriptions_router

DESCRIPTION = """
Billing of the online cinema: plans, subscriptions, payments (through pay_api and Stripe),
refunds and access decisions. Public endpoints take a user JWT; `/internal/v1` endpoints take a
service JWT (`aud=billing`, `iss` = the calling service). Errors are
`{"code": "<stable_snake_case>", "message": "..."}`. Money is integer minor units + currency.
"""


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> AccessFastPath:
    """Build the API with its own pools and clients (closed when the app shuts down): the FastAPI
    app behind the access fast path, whose attributes (`state`, `openapi`) it lends."""
    settings = settings or get_settings()
    if configure_logs:
        configure_logging(settings.log_level)
    resources = Resources(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Listen for access changes from the start, so the first checks can answer from memory.
        resources.access_cache.start()
        yield
        await resources.aclose()

    # /docs loads Swagger UI's files from billing itself, so it works offline (no /redoc: ReDoc
    # still fetches its logo from its CDN). BILLING_DOCS=0: no docs and no schema at all.
    docs = settings.docs
    new_app = FastAPIOffline if docs else partial(FastAPI, docs_url=None, openapi_url=None)
    app = new_app(
        title="Cinema Billing",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.resources = resources
    install_error_handlers(app)
    # Last added is outermost: metrics, request id and access log (valid access checks are
    # answered in front of all of them, see billing.access.fastpath).
    app.add_middleware(RateLimits, settings=settings, verifier=resources.verifier)
    app.add_middleware(InputGuard, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    if settings.movable_clock:
        app.add_middleware(ClockSync, resources=resources)  # before any decision
    app.add_middleware(RequestMetrics, openapi=app.openapi)

    # The access checks come first: routes are matched in order, and these are the hot ones.
    for router in (
        internal_access_router,
        access_router,
        plans_router,
        promotions_router,
        subscriptions_router,
        payments_router,
        refunds_router,
        internal_catalog_router,
        internal_events_router,
        internal_admin_router,
        internal_clock_router,
        internal_renewals_router,
        reports_router,
        health_router,
        internal_promotions_router,
    ):
        app.include_router(router)
    # Valid access checks are answered in front of FastAPI (see billing.access.fastpath).
    return AccessFastPath(app, resources)


_app: AccessFastPath | None = None


def __getattr__(name: str) -> AccessFastPath:
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(name)
