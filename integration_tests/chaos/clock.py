"""The stack's clock during the chaos run: billing's test clock (`/internal/v1/clock`, on in every
stack `scripts/stack.sh` starts), moved forward while users act and faults fire, so periods end,
renewals fall due, declined renewals are retried and graces run out.

The driver moves it toward a target the run sets (`aim`: the users arrive over the first months,
so the target follows the purchases done; then a tail), at most `pace` times faster than real
time, in seeded steps 0.3–1 s apart, and never more than `MAX_AHEAD` of the workers: before a
step it waits (a few seconds at most) until a worker pass that began at most that long ago is
over (`StackClock.workers_caught_up_to`). A clock running days ahead of a worker busy with a long
pass would have it write renewals after their grace was over and charge none of them; on a busy
machine the clock simply moves slower. While billing does not answer (stopped by the injector)
the clock stands still: the next step moves it by one step, not by the whole outage (at a day a
second, a 20-second restart would otherwise skip every grace period running then)."""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta

import httpx

from integration_tests.chaos.tally import Tally
from integration_tests.clients.clock import ClockUnanswered, StackClock

LONGEST_STEP_SECONDS = 1.0  # of real time: one step moves the clock at most pace × this
MAX_AHEAD = timedelta(days=1.5)  # of the stack's time: how far the clock may run ahead of workers
WORKERS_WAIT_SECONDS = 10  # the longest a step waits for the workers to catch up


class ClockDriver(threading.Thread):
    """Moves the clock until `stop()`; `now` is the time it last set, and `wait_until` lets a
    user wait for a moment of the stack's time."""

    def __init__(self, clock: StackClock, *, pace: float, seed: int, tally: Tally) -> None:
        super().__init__(daemon=True, name="clock")
        self.clock, self.pace, self.tally = clock, pace, tally
        self.rng = random.Random(f"{seed}-clock")
        self.now = clock.now()
        self.started = self.target = self.now
        self._stopped = threading.Event()
        self._moved = threading.Condition()

    def run(self) -> None:
        last = time.monotonic()
        while not self._stopped.wait(0.3 + 0.7 * self.rng.random()):
            self._wait_for_workers(self.now - MAX_AHEAD)
            moment = time.monotonic()
            step = min(
                min(moment - last, LONGEST_STEP_SECONDS) * self.pace,
                (self.target - self.now).total_seconds(),
            )
            if step <= 0:  # at the target: wait for the run to set the next one
                last = moment
                continue
            try:
                moved = self.clock.move_by(timedelta(seconds=step))
            except (httpx.HTTPError, ClockUnanswered):
                self.tally.count("actions", "clock_step_unanswered")  # billing down: stands still
                continue
            last = moment
            with self._moved:
                self.now = moved
                self._moved.notify_all()

    def _wait_for_workers(self, moment: datetime) -> None:
        """Until a worker pass that began at `moment` or later is over."""
        deadline = time.monotonic() + WORKERS_WAIT_SECONDS
        waited = False
        while True:
            try:
                caught_up = self.clock.workers_caught_up_to()
            except (httpx.HTTPError, ClockUnanswered):
                caught_up = None
            if caught_up is not None and caught_up >= moment:
                break
            if time.monotonic() > deadline:
                self.tally.count("actions", "clock_workers_wait_gave_up")
                break
            waited = True
            if self._stopped.wait(0.3):
                break
        if waited:
            self.tally.count("actions", "clock_waited_for_workers")

    def aim(self, moment: datetime) -> None:
        """Move on until `moment` (a target only ever moves forward)."""
        self.target = max(self.target, moment)

    def stop(self) -> None:
        self._stopped.set()
        self.join()

    def wait_until(
        self, moment: datetime, give_up: threading.Event, timeout: float | None = None
    ) -> bool:
        """Wait until the stack's time reaches `moment`; False if `give_up` is set first (or
        `timeout` real seconds pass: a clock that billing no longer moves)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._moved:
            while self.now < moment:
                if give_up.is_set() or (deadline is not None and time.monotonic() > deadline):
                    return False
                self._moved.wait(0.5)
        return True

    @property
    def days_passed(self) -> float:
        return (self.now - self.started).total_seconds() / 86400
