"""`make chaos`: many users buying, paying, refunding and double-clicking while faults are injected
at random; then let the system settle and compare every payment in billing with Stripe's.

    .venv/bin/python scripts/chaos.py [--users 200] [--seed N] [--workers 12]

The stack is its own (ports 24000+, databases cinema_chaos_*), with pay_api behind the
fault-injecting proxy. Every random choice — what each user does, which fault fires when — comes
from the seed, which is printed first, so a failing run can be replayed (thread timing aside).
Ends with exactly one summary line, each count measured:

    chaos: payments=N double_charges=0 over_refunds=0 stuck=0 stripe_mismatches=0 lost=0

payments: billing's payments. double_charges: payments with two successful charges at Stripe, plus
extra payments of one user and plan that Stripe charged and did not fully refund (each user buys
the plan once here, so two such are one user-plan-period charged twice). over_refunds: Stripe
refunded more than it charged, or billing counts more refunded than paid. stuck: not final in
billing after settling, or with a refund still pending. stripe_mismatches: any other disagreement `audit.problems` finds (billing
paid but Stripe not, amounts refunded differing, an expired payment whose intent could still
charge). lost: a payment Stripe holds an intent for (metadata.payment_id) that billing does not know.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from integration_tests.clients import (  # noqa: E402
    CARD_3DS,
    CARD_DECLINED_AT_CHARGE,
    CARD_OK,
    BillingClient,
    PaymentPage,
    StackSettings,
)
from integration_tests.clients.stripe_side import StripePayment  # noqa: E402
from integration_tests.faults.audit import FINAL, PAID, problems  # noqa: E402
from integration_tests.faults.own_stack import own_stack, stack_env  # noqa: E402
from integration_tests.faults.proxy import Fault, FaultProxy, Rule  # noqa: E402
from integration_tests.faults.tools import Faults  # noqa: E402
from integration_tests.scenario import DEMO_PLAN_ID  # noqa: E402

CHARGE_CRASHES = ("charge.before_confirm", "charge.after_confirm", "outbox.after_commit")
REFUND_CRASHES = ("refund.before_stripe", "refund.after_stripe")


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    actions: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def count(self, kind: str, what: str) -> None:
        with self.lock:
            getattr(self, kind)[what] += 1


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- users ---------------------------------------------------------------------------------------


def patiently(call, attempts: int = 10):
    """A person retries when the site does not answer (a service restarting, a cut connection, or
    nginx saying that no copy of the service answers)."""
    for attempt in range(attempts):
        try:
            answer = call()
        except httpx.TransportError:
            if attempt == attempts - 1:
                raise
        else:
            if not _no_copy_answers(answer) or attempt == attempts - 1:
                return answer
        time.sleep(0.5 + attempt * 0.5)
    raise AssertionError("unreachable")


def _no_copy_answers(answer) -> bool:
    """nginx's answer when every copy of the service is down (deploy/nginx/cinema.conf.template)."""
    if isinstance(answer, httpx.Response) and answer.status_code == 503:
        try:
            return answer.json().get("code") == "service_unavailable"
        except ValueError:
            return False
    return isinstance(answer, dict) and answer.get("code") == "service_unavailable"


def play_user(settings: StackSettings, seed: int, index: int, tally: Tally) -> None:
    """One user's life, every choice drawn from `Random(seed, index)`."""
    rng = random.Random(f"{seed}-{index}")
    user = BillingClient(settings)
    key = f"chaos-{seed}-{index}"
    if rng.random() < 0.25:  # a double click on "buy"
        tally.count("actions", "double_click_buy")
        with ThreadPoolExecutor(2) as pool:
            answers = list(
                pool.map(lambda _: patiently(lambda: user.buy(DEMO_PLAN_ID, key)), range(2))
            )
    else:
        answers = [patiently(lambda: user.buy(DEMO_PLAN_ID, key))]
    bought = next((a for a in answers if a.status_code in (200, 201)), None)
    for _ in range(5):  # the gateway or billing may have been down: the user tries again
        if bought is not None:
            break
        time.sleep(1)
        answer = patiently(lambda: user.buy(DEMO_PLAN_ID, key))
        bought = answer if answer.status_code in (200, 201) else None
    if bought is None:
        tally.count("actions", "could_not_buy")
        return
    payment = bought.json()["payment"]
    page = PaymentPage(settings, payment["payment_url"])

    roll = rng.random()
    if roll < 0.10:
        tally.count("actions", "abandoned")
        return  # never pays: expires
    if roll < 0.25:
        tally.count("actions", "declined_card")
        page.pay(CARD_DECLINED_AT_CHARGE)
        if rng.random() < 0.4:
            tally.count("actions", "gave_up_after_decline")
            return
    if roll > 0.90:
        tally.count("actions", "3ds_card")
        card = CARD_3DS
    else:
        card = CARD_OK
    result = page.pay(card)
    for _ in range(6):  # on an error page the user clicks pay again (a second click too, at times)
        if result.status == "succeeded":
            break
        time.sleep(0.5 + rng.random())
        if rng.random() < 0.3:
            tally.count("actions", "double_click_pay")
            with ThreadPoolExecutor(2) as pool:
                results = list(pool.map(lambda _: page.pay(card), range(2)))
            result = next((r for r in results if r.status == "succeeded"), results[0])
        else:
            result = page.pay(card)
    tally.count("actions", f"pay_{result.status}")
    if result.status != "succeeded":
        return
    if rng.random() < 0.3:
        seen = patiently(lambda: user.wait_for_payment(payment["id"], {"succeeded"}, timeout=20))
        if seen.get("status") != "succeeded":
            return
        clicks = 3 if rng.random() < 0.3 else 1
        tally.count("actions", f"refund_x{clicks}")
        with ThreadPoolExecutor(clicks) as pool:
            list(
                pool.map(
                    lambda i: patiently(lambda: user.refund(payment["id"], f"{key}-refund-{i}")),
                    range(clicks),
                )
            )


def play_user_safely(settings: StackSettings, seed: int, index: int, tally: Tally) -> None:
    try:
        play_user(settings, seed, index, tally)
    except Exception:  # a user hitting a dead socket is part of chaos; the audit judges the end
        tally.count("actions", "user_saw_an_error")
        with tally.lock:
            if len(tally.errors) < 5:
                tally.errors.append(traceback.format_exc(limit=3))


# --- faults --------------------------------------------------------------------------------------


def inject_faults(
    faults: Faults, proxy: FaultProxy, seed: int, stop: threading.Event, tally: Tally
) -> None:
    """Every 0.5–2 s, one fault drawn from the seed."""
    rng = random.Random(f"{seed}-faults")
    while not stop.wait(0.5 + 1.5 * rng.random()):
        kind = rng.choice(
            [
                "stripe_fault",
                "stripe_fault",
                "crash_charge",
                "crash_refund",
                "lose_webhooks",
                "billing_down",
                "cut_db",
            ]
        )
        tally.count("faults", kind)
        try:
            if kind == "stripe_fault":
                fault = rng.choice(list(Fault))
                path = rng.choice(
                    [r"/v1/payment_intents/\w+/confirm", r"/v1/payment_intents", r"/v1/refunds"]
                )
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
        except Exception as error:  # a fault that failed to fire is reported, not fatal
            log(f"fault {kind} could not be injected: {error!r}")
    proxy.clear()
    faults.disarm_all()
    faults.restore_webhooks()
    faults.stack("start", "billing")


# --- the audit -----------------------------------------------------------------------------------


def billing_payments(faults: Faults) -> list[dict[str, Any]]:
    payments, offset = [], 0
    while True:
        page = faults.billing_admin.http.get(
            "/internal/v1/payments", params={"limit": 500, "offset": offset}
        ).json()
        payments.extend(page["items"])
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return payments


def unsettled(payment: dict[str, Any]) -> bool:
    """Not final, or a refund of it still on its way."""
    return payment["status"] not in FINAL or any(
        refund["status"] == "pending" for refund in payment["refunds"]
    )


def settle(faults: Faults, timeout: float) -> list[dict[str, Any]]:
    """Wait until billing holds every payment final (or `timeout`); the payments then."""
    deadline = time.monotonic() + timeout
    while True:
        payments = billing_payments(faults)
        open_ = [p for p in payments if unsettled(p)]
        if not open_ or time.monotonic() > deadline:
            return payments
        log(f"settling: {len(open_)} of {len(payments)} payments not final yet")
        time.sleep(3)


def audit(faults: Faults, payments: list[dict[str, Any]]) -> dict[str, int]:
    stripe = faults.stripe.payments()
    counts = Counter(payments=len(payments))
    charged_by_user_plan: dict[tuple[str, str], int] = defaultdict(int)
    for payment in payments:
        at_stripe = stripe.get(payment["id"]) or StripePayment(payment["id"])
        double = len(at_stripe.succeeded_charges) > 1
        over = at_stripe.refunded > at_stripe.charged or (
            payment["refunded_amount"] > payment["amount"]
        )
        stuck = unsettled(payment)
        counts["double_charges"] += double
        counts["over_refunds"] += over
        counts["stuck"] += stuck
        if at_stripe.charged and at_stripe.refunded < at_stripe.charged:
            charged_by_user_plan[(payment["user_id"], payment["plan_id"])] += 1
        found = problems(payment, at_stripe)
        if found and not (double or over or stuck):
            counts["stripe_mismatches"] += 1
        if found:
            log(f"payment {payment['id']} ({payment['status']}): {'; '.join(found)}")
    # two kept charges for one user and plan (each user buys once here): a double charge too
    counts["double_charges"] += sum(n - 1 for n in charged_by_user_plan.values() if n > 1)
    known = {p["id"] for p in payments}
    lost = [pid for pid, sp in stripe.items() if pid not in known and sp.intents]
    counts["lost"] = len(lost)
    for pid in lost:
        log(f"Stripe knows payment {pid}, billing does not")
    counts["paid"] = sum(p["status"] in PAID for p in payments)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--settle-seconds", type=float, default=180)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    log(f"chaos: seed={seed} users={args.users} (replay: scripts/chaos.py --seed {seed})")

    env = stack_env(port_base=24000, name="chaos", redis_db=10)
    with own_stack(env, BILLING_PAYMENT_TTL_SECONDS="40") as (settings, proxy):
        faults = Faults(settings)
        tally = Tally()
        stop = threading.Event()
        injector = threading.Thread(
            target=inject_faults, args=(faults, proxy, seed, stop, tally), daemon=True
        )
        started = time.monotonic()
        injector.start()
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            list(pool.map(lambda i: play_user_safely(settings, seed, i, tally), range(args.users)))
        stop.set()
        injector.join()
        log(f"load done in {time.monotonic() - started:.0f} s; actions: {dict(tally.actions)}")
        log(f"faults injected: {dict(tally.faults)}")
        for error in tally.errors:
            log(f"a user saw: {error.strip().splitlines()[-1]}")
        payments = settle(faults, timeout=args.settle_seconds)
        counts = audit(faults, payments)
        log(f"paid: {counts['paid']}, final states: {dict(Counter(p['status'] for p in payments))}")
    print(
        f"chaos: payments={counts['payments']} double_charges={counts['double_charges']} "
        f"over_refunds={counts['over_refunds']} stuck={counts['stuck']} "
        f"stripe_mismatches={counts['stripe_mismatches']} lost={counts['lost']}"
    )
    bad = sum(
        counts[k] for k in ("double_charges", "over_refunds", "stuck", "stripe_mismatches", "lost")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
