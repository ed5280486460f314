"""`make chaos`: users buy, pay, renew and refund under a moving clock and random faults; then
every payment, renewals too, is compared with Stripe's.

    .venv/bin/python scripts/chaos.py [--users 200] [--seed N] [--workers 12]
        [--purchase-days 60] [--tail-days 20] [--days-per-second 1]

The stack is its own (ports 24000+, databases cinema_chaos_*), with pay_api behind the
fault-injecting proxy and billing's test clock moved forward by the run (`chaos/clock.py`).
Every random choice — what each user does, which fault fires when, each step of the clock — comes
from the seed, which is printed first, so a failing run can be replayed (thread timing aside).

1. 200 users buy the plan, `--workers` at a time (`integration_tests/chaos/users.py`), arriving
   over the clock's first `--purchase-days` (the clock follows the purchases done, at most
   `--days-per-second` days a second and never far ahead of billing's worker); each one who holds
   a paid subscription lives on while the clock moves (`chaos/renewals.py`): periods end and the
   worker renews with the saved card, off-session; cards that decline or need 3-D Secure at
   renewal, and the emailed links to pay with another card or to authenticate; cancel at period
   end and resume; a renewal refunded. The injector (`chaos/injector.py`) fires a fault every
   0.5–2 s all along;
2. `--tail-days` later it is closing time: every subscriber leaves (cancels what still renews),
   the injector stops, and the clock moves past every period end and payment deadline;
3. the reconciler settles and the audit compares billing with Stripe (`chaos/audit.py`, where
   each count is defined). Ends with exactly one summary line, each count measured:

    chaos: payments=N double_charges=0 over_refunds=0 stuck=0 stripe_mismatches=0 lost=0 renewals=N double_renewals=0

Exit status 1 when any count but `payments` and `renewals` is not 0.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from integration_tests.chaos.audit import audit, settle  # noqa: E402
from integration_tests.chaos.clock import ClockDriver  # noqa: E402
from integration_tests.chaos.injector import inject_faults  # noqa: E402
from integration_tests.chaos.renewals import Postman, Stage, leave, live  # noqa: E402
from integration_tests.chaos.tally import Tally, log  # noqa: E402
from integration_tests.chaos.users import Subscriber, patiently, play_user  # noqa: E402
from integration_tests.clients import StackClock, StackSettings  # noqa: E402
from integration_tests.faults.own_stack import own_stack, stack_env  # noqa: E402
from integration_tests.faults.proxy import FaultProxy  # noqa: E402
from integration_tests.faults.tools import Faults  # noqa: E402

DAY = 86400
BAD_COUNTS = ("double_charges", "over_refunds", "stuck", "stripe_mismatches", "lost")
# billing's renewal settings in the chaos stack: its defaults (7 days of grace, retries 1, 3 and
# 5 days after the period's end), but the renewal charged two days before the period ends: the
# clock runs up to 1.5 days ahead of the worker's pass (chaos/clock.py), as a worker that passes
# every few seconds is an instant ahead in production (the default lead is an hour).
RENEWAL_LEAD_DAYS, GRACE_DAYS, LONGEST_PERIOD_DAYS = 2, 7, 31
# A first payment stays open 30 days of the moving clock: at most a day a second, so 30 s or more
# of the run for the user to pay (the default half an hour is seconds here).
FIRST_PAYMENT_TTL_DAYS = 30
CHAOS_SETTINGS = {
    "BILLING_TEST_CLOCK": "1",  # stack.sh's default too; the run cannot do without it
    "BILLING_PAYMENT_TTL_SECONDS": str(FIRST_PAYMENT_TTL_DAYS * DAY),
    "BILLING_RENEWAL_LEAD_SECONDS": str(RENEWAL_LEAD_DAYS * DAY),
}
# At the end: past every open first payment's deadline, every renewal's grace and paid period.
FINAL_MOVE_DAYS = (
    max(FIRST_PAYMENT_TTL_DAYS, LONGEST_PERIOD_DAYS + RENEWAL_LEAD_DAYS + GRACE_DAYS) + 2
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=12, help="users buying at once")
    parser.add_argument(
        "--purchase-days", type=float, default=60, help="clock days the purchases spread over"
    )
    parser.add_argument(
        "--tail-days", type=float, default=20, help="clock days after them, then closing time"
    )
    parser.add_argument(
        "--days-per-second", type=float, default=1.0, help="the clock's fastest pace"
    )
    parser.add_argument("--settle-seconds", type=float, default=180)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    log(f"chaos: seed={seed} users={args.users} (replay: scripts/chaos.py --seed {seed})")
    run_started = time.monotonic()
    env = stack_env(port_base=24000, name="chaos", redis_db=10)
    with own_stack(env, **CHAOS_SETTINGS) as (settings, proxy):
        counts = run(settings, proxy, seed, args)
    log(f"chaos.py took {time.monotonic() - run_started:.0f} s")
    print(
        f"chaos: payments={counts['payments']} double_charges={counts['double_charges']} "
        f"over_refunds={counts['over_refunds']} stuck={counts['stuck']} "
        f"stripe_mismatches={counts['stripe_mismatches']} lost={counts['lost']} "
        f"renewals={counts['renewals']} double_renewals={counts['double_renewals']}"
    )
    return 1 if sum(counts[k] for k in (*BAD_COUNTS, "double_renewals")) else 0


def run(settings: StackSettings, proxy: FaultProxy, seed: int, args: argparse.Namespace) -> Counter:
    faults = Faults(settings)
    tally = Tally()
    clock = ClockDriver(
        StackClock(settings), pace=args.days_per_second * DAY, seed=seed, tally=tally
    )
    stage = Stage(settings, tally, clock, Postman(settings))
    stop_faults = threading.Event()
    injector = threading.Thread(
        target=inject_faults,
        args=(faults, proxy, seed, stop_faults, tally, int(settings["WORKER_COPIES"])),
        daemon=True,
    )
    subscribers: list[Subscriber] = []
    lives: list[threading.Thread] = []
    done = threading.Lock()
    finished = Counter()

    def purchase(index: int) -> None:
        try:
            subscriber = play_user(settings, seed, index, tally)
        except Exception:
            tally.error_seen()
            subscriber = None
        with done:
            # The users arrive over the first `purchase_days` of the clock.
            finished["users"] += 1
            clock.aim(
                clock.started + timedelta(days=args.purchase_days * finished["users"] / args.users)
            )
            if subscriber is not None:
                inbox = stage.postman.inbox(subscriber.user_id)
                life = threading.Thread(target=live, args=(stage, subscriber, inbox), daemon=True)
                life.start()
                subscribers.append(subscriber)
                lives.append(life)

    started = time.monotonic()
    for thread in (clock, stage.postman, injector):
        thread.start()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(purchase, range(args.users)))
    log(
        f"purchases done in {time.monotonic() - started:.0f} s, the clock {clock.days_passed:.0f} "
        f"days on; {len(subscribers)} subscribers"
    )
    closing = clock.started + timedelta(days=args.purchase_days + args.tail_days)
    clock.aim(closing)
    clock.wait_until(closing, stage.closing, timeout=600)
    stage.closing.set()
    for life in lives:
        life.join()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(lambda subscriber: leave(stage, subscriber), subscribers))
    stop_faults.set()
    injector.join()
    clock.stop()
    stage.postman.stop()
    log(
        f"load done in {time.monotonic() - started:.0f} s, the clock {clock.days_passed:.0f} days "
        f"on; actions: {dict(sorted(tally.actions.items()))}"
    )
    log(f"faults injected: {dict(sorted(tally.faults.items()))}")
    for error in tally.errors:
        log(f"a user saw: {error}")
    patiently(lambda: clock.clock.move_by(timedelta(days=FINAL_MOVE_DAYS)))
    log(f"the clock moved {FINAL_MOVE_DAYS} days on: past every period and payment deadline")
    payments = settle(faults, timeout=args.settle_seconds)
    counts = audit(faults, payments)
    states = Counter(f"{p['kind']}:{p['status']}" for p in payments)
    log(f"paid: {counts['paid']}, final states: {dict(sorted(states.items()))}")
    return counts


if __name__ == "__main__":
    sys.exit(main())
