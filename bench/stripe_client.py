"""CPU per Stripe request of pay_api's gateway: its HTTP client under stripe-python, measured alone.

    .venv/bin/python bench/fake_stripe.py --port 26431 &
    .venv/bin/python bench/stripe_client.py --port 26431 --client urllib3
    .venv/bin/python bench/stripe_client.py --port 26431 --client requests   # stripe's RequestsClient
    .venv/bin/python bench/stripe_client.py --port 26431 --through sdk       # the SDK's own calls

Runs `--renewals` (2000) times what a renewal asks Stripe — `Gateway.create_payment_intent`, then
`Gateway.confirm_payment_intent(off_session=True)`, two requests (sent without the SDK's object
layer, `stripe_http.DirectPosts`; `--through sdk`: the same two through the SDK's own calls) — against `bench/fake_stripe.py`
(pay_api pointed at it as in bench/renewals.py: `STRIPE_API_BASE`, `STRIPE_LOCALSTRIPE=0`), after
100 unmeasured ones, from `--threads` threads (1: one after the other; 16: as a batch of renewals,
`PAY_API_STRIPE_CONCURRENCY`). Prints this process's CPU time (`time.process_time()`: every thread,
user and system) and wall time per Stripe request. The fake Stripe runs in its own process, so its
CPU is not counted. Results: bench/README.md, "The Stripe HTTP client".
"""

from __future__ import annotations

import argparse
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import stripe
from pay_api.config import Settings
from pay_api.gateway import CONNECT_TIMEOUT_SECONDS, Gateway, IntentState, stripe_errors_mapped

WARM_UP = 100


def gateway_for(port: int, client: str) -> Gateway:
    settings = Settings(
        _env_file=None,
        STRIPE_SECRET_KEY="sk_test_bench",
        STRIPE_PUBLISHABLE_KEY="pk_test_bench",
        STRIPE_WEBHOOK_SECRET="whsec_bench",
        SERVICE_JWT_SECRET="bench-service-secret-0123456789abcdef",
        STRIPE_API_BASE=f"http://127.0.0.1:{port}",
        STRIPE_LOCALSTRIPE=False,
    )
    if client == "requests":  # what the gateway used before (stripe's RequestsClient)
        return Gateway(
            settings,
            http_client=stripe.RequestsClient(
                timeout=(CONNECT_TIMEOUT_SECONDS, settings.stripe_timeout_seconds)
            ),
        )
    return Gateway(settings)


def renew(gateway: Gateway, _: int = 0) -> None:
    """The two Stripe requests of one off-session renewal, as the gateway sends them
    (`stripe_http.DirectPosts`: without the SDK's object layer)."""
    payment_id = str(uuid.uuid4())
    intent = gateway.create_payment_intent(
        payment_id=payment_id,
        customer_id="cus_bench",
        payment_method_id="pm_bench",
        amount=999,
        currency="usd",
        description="Premium, monthly",
    )
    state = gateway.confirm_payment_intent(
        intent.id,
        payment_method_id="pm_bench",
        idempotency_key=f"bench-{payment_id}-1",
        off_session=True,
    )
    assert state.status == "succeeded", state


def renew_through_the_sdk(gateway: Gateway, _: int = 0) -> None:
    """The same two requests through the SDK's own calls (what the gateway sent before
    `DirectPosts`), read into the same `IntentState`s."""
    payment_id = str(uuid.uuid4())
    with stripe_errors_mapped():
        intent = IntentState.from_stripe(
            gateway.client.v1.payment_intents.create(
                params={
                    "amount": 999,
                    "currency": "usd",
                    "customer": "cus_bench",
                    "payment_method": "pm_bench",
                    "payment_method_types": ["card"],
                    "metadata": {"payment_id": payment_id},
                    "description": "Premium, monthly",
                },
                options={"idempotency_key": f"pay_api-pi-create-{payment_id}-pm_bench"},
            )
        )
        state = IntentState.from_stripe(
            gateway.client.v1.payment_intents.confirm(
                intent.id,
                params={"payment_method": "pm_bench", "off_session": True},
                options={"idempotency_key": f"bench-{payment_id}-1"},
            )
        )
    assert state.status == "succeeded", state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="bench/fake_stripe.py's port")
    parser.add_argument("--client", choices=("urllib3", "requests"), default="urllib3")
    parser.add_argument(
        "--through",
        choices=("direct", "sdk"),
        default="direct",
        help="direct: as the gateway sends them; sdk: through the SDK's own calls",
    )
    parser.add_argument("--renewals", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    gateway = gateway_for(args.port, args.client)
    one = renew if args.through == "direct" else renew_through_the_sdk
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        list(pool.map(lambda i: one(gateway), range(WARM_UP)))
        cpu, wall = time.process_time(), time.perf_counter()
        list(pool.map(lambda i: one(gateway), range(args.renewals)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    calls = 2 * args.renewals
    print(
        f"client={args.client} through={args.through} threads={args.threads} "
        f"stripe_requests={calls} "
        f"cpu_ms_per_request={1000 * cpu / calls:.3f} wall_ms_per_request={1000 * wall / calls:.3f}"
    )


if __name__ == "__main__":
    main()
