"""The stack's effective settings, the one source for `make up`, the demo and every test suite.

    sys.path.insert(0, str(REPO / "scripts")); from stack_env import stack_env, postgres_server_url

They are what `scripts/stack.sh env` prints: the environment, then .env, then what stack.sh chose
for its own PostgreSQL, then .env.example, with the database and service URLs derived from the
ports. Nothing else reads those files, so a test never talks to another server than the stack."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stack_env(extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """Every setting as `scripts/stack.sh env` prints it (`extra_env` over the environment)."""
    if extra_env is None:
        return dict(_current())
    return _load({**os.environ, **extra_env})


@cache
def _current() -> tuple[tuple[str, str], ...]:
    return tuple(_load(dict(os.environ)).items())


def _load(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "scripts" / "stack.sh"), "env"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def postgres_server_url(scheme: str = "postgresql") -> str:
    """The stack's PostgreSQL server, without a database: `scheme://user@host:port`."""
    env = stack_env()
    return f"{scheme}://{env['POSTGRES_USER']}@{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}"


def redis_server_url(db: int) -> str:
    """The stack's Redis server, database `db` (tests use their own, away from the stack's)."""
    return f"redis://127.0.0.1:{stack_env()['REDIS_PORT']}/{db}"
