"""`make demo`: play the user scenario against the running system, one line per step.

Exits non-zero at the first step that fails."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from integration_tests.clients import StackSettings  # noqa: E402
from integration_tests.renewal_scenario import RenewalScenario  # noqa: E402
from integration_tests.scenario import Scenario  # noqa: E402


def main() -> int:
    settings = StackSettings.load()
    # The user scenario, then renewals (they move the stack's clock forward, so they come last).
    steps = [*Scenario(settings).steps(), *RenewalScenario(settings).steps()]
    for number, (name, step) in enumerate(steps, start=1):
        started = time.monotonic()
        try:
            summary = step()
        except Exception as error:  # the demo reports every failure the same way
            print(f"[{number:2}/{len(steps)}] FAIL  {name}: {error}")
            return 1
        print(
            f"[{number:2}/{len(steps)}] ok    {name} ({time.monotonic() - started:.1f} s): {summary}"
        )
    print("demo: every step passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
