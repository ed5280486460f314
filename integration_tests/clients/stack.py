"""Where the running system is and how it is configured, read from `scripts/stack.sh env`."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from stack_env import stack_env  # noqa: E402


@dataclass(frozen=True)
class StackSettings:
    values: dict[str, str]

    @classmethod
    def load(cls, extra_env: dict[str, str] | None = None) -> StackSettings:
        """The effective settings of a stack (environment, .env, .env.example, derived URLs)."""
        return cls(stack_env(extra_env or {}))

    def __getitem__(self, key: str) -> str:
        return self.values[key]

    @property
    def billing_url(self) -> str:
        return self.values["BILLING_URL"]

    @property
    def pay_api_url(self) -> str:
        return self.values["PAY_API_URL"]

    @property
    def admin_url(self) -> str:
        return self.values["ADMIN_URL"]

    @property
    def stripe_js_base(self) -> str:
        """Where the browser's Stripe.js talks to (localstripe itself, never the fault proxy)."""
        js_url = self.values.get("STRIPE_JS_URL", "")
        return js_url.removesuffix("/js.stripe.com/v3/") or self.values["STRIPE_API_BASE"]

    def env(self) -> dict[str, str]:
        """An environment for a subprocess that should see these settings."""
        return {**os.environ, **self.values}


def exchange_hooks(on_exchange) -> dict:
    """httpx event hooks that hand every response (read, with its request) to `on_exchange`."""
    if on_exchange is None:
        return {}
    return {"response": [lambda response: (response.read(), on_exchange(response))]}
