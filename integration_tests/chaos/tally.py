"""What the chaos run counts as it goes (users' actions, faults fired) and how it logs."""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    actions: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def count(self, kind: str, what: str) -> None:
        with self.lock:
            getattr(self, kind)[what] += 1

    def error_seen(self) -> None:
        """A user met an error (a dead socket is part of chaos; the audit judges the end)."""
        self.count("actions", "user_saw_an_error")
        error = sys.exc_info()[1]
        said = str(error).splitlines()[0] if str(error) else ""
        # where in the run's own code it surfaced (httpx's frames say less)
        ours = [
            f
            for f in traceback.extract_tb(error.__traceback__)
            if "integration_tests" in f.filename
        ]
        where = f" ({ours[-1].filename.rsplit('/', 1)[-1]}:{ours[-1].lineno})" if ours else ""
        with self.lock:
            if len(self.errors) < 5:
                self.errors.append(f"{type(error).__name__}: {said}{where}")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
