"""Registering a payment with pay_api (idempotent by payment id) and applying its answer."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from datetime import datetime

from sqlalchemy import select

from billing.errors import GatewayError, GatewayUnavailable
from billing.outbox import commit
from billing.pay_api import PayApiRejected, PayApiUnavailable
from billing.payments.models import Payment
from billing.payments.service import PaymentReport, claim, lock_payment, schedule_check
from billing.resources import Resources
from billing.settlement.answers import apply_payment_report

logger = logging.getLogger(__name__)


async def send_registration(resources: Resources, payment: Payment) -> dict:
    """POST the payment to pay_api (idempotent by its id); pay_api's answer."""
    return await resources.pay_api.register_payment(
        payment_id=str(payment.id),
        user_id=str(payment.user_id),
        amount=payment.amount,
        currency=payment.currency,
        description=payment.description,
        return_url=resources.settings.return_url_for(str(payment.id)),
        gross_amount=payment.gross_amount,
        discount_amount=payment.discount_amount,
        promo_code=payment.promo_code,
    )


UNREGISTERED = Payment.status == "created"
WAIT_STEP_SECONDS = 0.1


async def _claim_or_wait(session, payment_id: uuid.UUID, *, lease: int) -> bool:
    """Lease the unregistered payment for one pay_api call; while someone else holds it, wait
    until they registered it (False) or their lease ran out (then take it). A lease is only a
    courtesy — registering twice is harmless, pay_api is idempotent by payment id — so the wait
    is bounded by one lease, after which the payment is answered as the gateway being busy."""
    give_up = asyncio.get_running_loop().time() + lease + 1
    while True:
        if await claim(session, Payment, payment_id, UNREGISTERED, seconds=lease):
            return True
        status = await session.scalar(select(Payment.status).where(Payment.id == payment_id))
        await session.commit()
        if status != "created":
            return False
        if asyncio.get_running_loop().time() > give_up:
            raise GatewayUnavailable()
        await asyncio.sleep(WAIT_STEP_SECONDS)


async def register(
    *,
    resources: Resources,
    payment_id: uuid.UUID,
    now: datetime,
    raise_errors: bool,
    claimed: bool = False,
) -> None:
    """Create the payment at pay_api if it is still `created` (idempotent by payment id).

    `claimed`: the caller (the worker) already holds the row's lease. `raise_errors`: the caller
    is the user's purchase, which must not answer a payment pay_api has not heard of (its page
    would answer 404): while another holder registers it, wait for that; a holder that died
    (its lease outlives it) is replaced once its lease, as long as one pay_api call, ran out."""
    settings = resources.settings
    async with resources.sessionmaker() as session:
        if not claimed:
            if raise_errors:
                lease = math.ceil(settings.pay_api_connect_timeout + settings.pay_api_timeout) + 1
                if not await _claim_or_wait(session, payment_id, lease=lease):
                    return  # registered meanwhile (or it moved on)
            elif not await claim(
                session,
                Payment,
                payment_id,
                UNREGISTERED,
                seconds=settings.worker_claim_seconds,
            ):
                return  # someone else registers it right now, or it moved on
        payment = await session.get(Payment, payment_id)
        try:
            answer = await send_registration(resources, payment)
        except (PayApiUnavailable, PayApiRejected) as exc:
            payment = await lock_payment(session, payment_id)
            payment.claimed_until = None
            schedule_check(payment, now=now, settings=settings, retry=True)
            await session.commit()
            if isinstance(exc, PayApiRejected):
                logger.error(
                    "pay_api refused a payment",
                    extra={"payment_id": str(payment_id), "code": exc.code},
                )
                if raise_errors:
                    raise GatewayError(
                        f"The payment gateway refused the payment ({exc.code})."
                    ) from exc
            elif raise_errors:
                raise GatewayUnavailable() from exc
            return
        payment = await lock_payment(session, payment_id)
        payment.claimed_until = None
        await apply_payment_report(
            session,
            payment=payment,
            report=PaymentReport.from_answer(answer, asked_at=None),
            now=now,
            settings=settings,
        )
        await commit(session, resources.access_cache)
