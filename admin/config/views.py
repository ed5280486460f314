"""Liveness and readiness (docs/contracts.md, "Health, readiness, metrics").

`HealthCheckMiddleware` answers them first in the chain: probes come from the container runtime
and nginx with whatever Host header they use, over plain HTTP, so neither ALLOWED_HOSTS nor the
HTTPS redirect may turn them away.
"""

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.utils import DatabaseError
from django.http import JsonResponse


def health(request):
    """Liveness: the process answers (nothing else is asked, so a database outage restarts nothing)."""
    return JsonResponse({"status": "ok"})


def ready(request):
    """Readiness: the database answers and no migration is left to apply."""
    checks = {"database": "ok", "migrations": "ok"}
    try:
        connection = connections[DEFAULT_DB_ALIAS]
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            checks["migrations"] = "pending"
    except DatabaseError:
        checks = {"database": "unavailable", "migrations": "unknown"}
    if all(value == "ok" for value in checks.values()):
        return JsonResponse({"status": "ready", "checks": checks})
    return JsonResponse(
        {"code": "not_ready", "message": "The admin cannot serve yet.", "details": checks},
        status=503,
    )


class HealthCheckMiddleware:
    """Answers GET /health and /health/ready before any other middleware."""

    views = {"/health": health, "/health/ready": ready}

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        view = self.views.get(request.path_info)
        if view is not None and request.method in ("GET", "HEAD"):
            return view(request)
        return self.get_response(request)
