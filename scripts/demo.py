"""`make demo`: play the user scenario against the running system, one line per step.

The steps are `Scenario.steps()` then `RenewalScenario.steps()` (integration_tests/; the integration
tests play the same ones): add a step there and both run it. Checks first that the system answers, and exits non-zero
at the first step that fails."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from integration_tests.clients import StackSettings  # noqa: E402
from integration_tests.renewal_scenario import RenewalScenario  # noqa: E402
from integration_tests.scenario import Scenario  # noqa: E402


def not_answering(settings: StackSettings) -> Iterator[str]:
    """The services that do not answer their health check, each with its URL."""
    for name, base in (
        ("billing", settings.billing_url),
        ("pay_api", settings.pay_api_url),
        ("admin", settings.admin_url),
    ):
        url = f"{base}/health"
        try:
            answered = httpx.get(url, timeout=3).is_success
        except httpx.HTTPError:
            answered = False
        if not answered:
            yield f"{name} at {url}"


def describe(error: Exception) -> str:
    """The error, with the URL it concerns when it is an HTTP one (a refused connection says none)."""
    if isinstance(error, httpx.RequestError):
        return f"{error} ({error.request.method} {error.request.url})"
    return str(error) or type(error).__name__


def main() -> int:
    settings = StackSettings.load()
    silent = list(not_answering(settings))
    if silent:
        print(f"The system is not running: no answer from {', '.join(silent)}.")
        print("Start it with `make up` (same settings as this demo), then run `make demo` again.")
        return 1
    # The user scenario, then renewals (they move the stack's clock forward, so they come last).
    steps = [*Scenario(settings).steps(), *RenewalScenario(settings).steps()]
    for number, (name, step) in enumerate(steps, start=1):
        started = time.monotonic()
        try:
            summary = step()
        except Exception as error:  # the demo reports every failure the same way
            print(f"[{number:2}/{len(steps)}] FAIL  {name}: {describe(error)}")
            return 1
        print(
            f"[{number:2}/{len(steps)}] ok    {name} ({time.monotonic() - started:.1f} s): {summary}"
        )
    print("demo: every step passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
