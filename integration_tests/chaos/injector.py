"""The fault injector of the chaos run: every 0.5–2 s one fault drawn from the seed, for real —
processes crash or stop, Stripe's answers are lost or late, webhooks go nowhere, database sessions
are cut. First payments, refunds and renewals all meet the same faults."""

from __future__ import annotations

import random
import threading

from integration_tests.chaos.tally import Tally, log
from integration_tests.faults.proxy import Fault, FaultProxy, Rule
from integration_tests.faults.tools import Faults

# pay_api's crash points (pay_api/failpoints.py): the charge path is the same for a payment page's
# charge and a renewal's off-session one.
CHARGE_CRASHES = ("charge.before_confirm", "charge.after_confirm", "outbox.after_commit")
REFUND_CRASHES = ("refund.before_stripe", "refund.after_stripe")
STRIPE_CALLS = (r"/v1/payment_intents/\w+/confirm", r"/v1/payment_intents", r"/v1/refunds")
# What a broken Stripe call does (HOLD, a DELAY that a test ends, is not one of them here).
STRIPE_FAULTS = (
    Fault.RESET_BEFORE_UPSTREAM,
    Fault.RESET_AFTER_UPSTREAM,
    Fault.DELAY,
    Fault.HTTP_500,
)
KINDS = (
    "stripe_fault",
    "stripe_fault",
    "crash_charge",
    "crash_refund",
    "lose_webhooks",
    "billing_down",
    "cut_db",
    "kill_worker",
)


def inject_faults(
    faults: Faults,
    proxy: FaultProxy,
    seed: int,
    stop: threading.Event,
    tally: Tally,
    worker_copies: int,
) -> None:
    """Until `stop`: every 0.5–2 s, one fault; then everything back to normal."""
    rng = random.Random(f"{seed}-faults")
    while not stop.wait(0.5 + 1.5 * rng.random()):
        kind = rng.choice(KINDS)
        tally.count("faults", kind)
        try:
            if kind == "stripe_fault":
                fault, path = rng.choice(STRIPE_FAULTS), rng.choice(STRIPE_CALLS)
                proxy.add(Rule("POST", path, fault, times=rng.randint(1, 3), delay=15))
            elif kind == "crash_charge":
                faults.arm(rng.choice(CHARGE_CRASHES))
            elif kind == "crash_refund":
                faults.arm(rng.choice(REFUND_CRASHES))
            elif kind == "lose_webhooks":
                faults.lose_webhooks()
                stop.wait(2 + 3 * rng.random())
                faults.restore_webhooks()
            elif kind == "billing_down":
                faults.stack("stop", "billing")
                stop.wait(1 + 2 * rng.random())
                faults.stack("start", "billing")
            elif kind == "cut_db":
                faults.terminate_billing_connections()
            elif kind == "kill_worker":
                # One copy of billing's worker dies (SIGKILL) mid-pass: a renewal it was charging
                # keeps its lease until the lease runs out, then the other copy takes it.
                copy = f"billing-worker-{rng.randint(1, worker_copies)}"
                faults.stack("kill", copy)
                stop.wait(1 + 2 * rng.random())
                faults.stack("start", copy)
        except Exception as error:  # a fault that failed to fire is reported, not fatal
            log(f"fault {kind} could not be injected: {error!r}")
    proxy.clear()
    faults.disarm_all()
    faults.restore_webhooks()
    faults.stack("start", "billing", "billing-worker")
