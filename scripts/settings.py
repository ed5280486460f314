"""The project's settings as `scripts/stack.sh` sees them (environment, .env, .env.example, derived URLs)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_settings(extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """Ask stack.sh for the effective settings, so there is one place that derives them."""
    env = {**os.environ, **(extra_env or {})}
    out = subprocess.run(
        [str(ROOT / "scripts" / "stack.sh"), "env"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    settings = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    settings.setdefault("AUTH_JWT_PRIVATE_KEY_FILE", env.get("AUTH_JWT_PRIVATE_KEY_FILE", ""))
    return settings
