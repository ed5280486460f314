"""Taking and giving back a promo code's uses, guarded by the database.

`reserve` runs in the purchase's transaction, with the payment it discounts:
* the code's counter moves only by `UPDATE … SET times_redeemed = times_redeemed + 1 WHERE
  times_redeemed < max_redemptions` — PostgreSQL re-checks the condition on the row's newest
  version after waiting for its lock, so of any number of concurrent buyers exactly as many as
  there are uses left get one;
* the user's counter moves only by `INSERT … ON CONFLICT (promo_code_id, user_id) DO UPDATE SET
  redeemed = redeemed + 1 WHERE redeemed < max_per_user` — the primary key makes one row per
  (code, user), the condition keeps it within the per-user limit;
* the redemption row is unique per payment.
Either refusal raises, and the purchase's transaction is rolled back whole: no payment, no use.

`settle` moves a redemption when its payment reaches a final state (called from where billing
applies pay_api's answers, `payments.service`): confirmed on success, released — the use given
back to both counters — on failure, expiry or cancel, once (a conditional UPDATE on the status).
A refund does not give a use back: the code was used for a payment that happened.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.errors import PromoCodeAlreadyUsed, PromoCodeExhausted
from billing.promotions import state
from billing.promotions.models import PromoCode, PromoCodeUser, Redemption
from billing.promotions.schemas import terms_of


async def reserve(
    session: AsyncSession,
    *,
    promo: PromoCode,
    user_id: uuid.UUID,
    payment_id: uuid.UUID,
    subscription_id: uuid.UUID,
    now: datetime,
) -> Redemption:
    """Take one use of `promo` for this payment, or raise its refusal. Flushed, not committed."""
    taken = await session.scalar(
        update(PromoCode)
        .where(
            PromoCode.id == promo.id,
            (PromoCode.max_redemptions.is_(None))
            | (PromoCode.times_redeemed < PromoCode.max_redemptions),
        )
        .values(times_redeemed=PromoCode.times_redeemed + 1)
        .returning(PromoCode.id)
    )
    if taken is None:
        raise PromoCodeExhausted()
    upsert = insert(PromoCodeUser).values(promo_code_id=promo.id, user_id=user_id, redeemed=1)
    within_limit = (
        None if promo.max_per_user is None else PromoCodeUser.redeemed < promo.max_per_user
    )
    counted = await session.scalar(
        upsert.on_conflict_do_update(
            index_elements=["promo_code_id", "user_id"],
            set_={"redeemed": PromoCodeUser.redeemed + 1},
            where=within_limit,
        ).returning(PromoCodeUser.redeemed)
    )
    if counted is None:
        raise PromoCodeAlreadyUsed()
    redemption = Redemption(
        id=uuid.uuid4(),
        promo_code_id=promo.id,
        user_id=user_id,
        payment_id=payment_id,
        subscription_id=subscription_id,
        code=promo.code,
        status="reserved",
        # The code's terms as they are now: renewals keep them whatever a manager edits later.
        **asdict(terms_of(promo)),
        created_at=now,
        updated_at=now,
    )
    session.add(redemption)
    await session.flush()
    return redemption


async def _count(session: AsyncSession, redemption: Redemption, step: int) -> None:
    await session.execute(
        update(PromoCode)
        .where(PromoCode.id == redemption.promo_code_id)
        .values(times_redeemed=PromoCode.times_redeemed + step)
    )
    await session.execute(
        update(PromoCodeUser)
        .where(
            PromoCodeUser.promo_code_id == redemption.promo_code_id,
            PromoCodeUser.user_id == redemption.user_id,
        )
        .values(redeemed=PromoCodeUser.redeemed + step)
    )


async def settle(
    session: AsyncSession, *, payment_id: uuid.UUID, payment_status: str, now: datetime
) -> Redemption | None:
    """Move the payment's redemption (if any) as its new status says; not committed. Callers hold
    the payment's row lock; the redemption's own lock is taken here too."""
    new = state.status_for_payment(payment_status)
    if new is None:
        return None
    redemption = await session.scalar(
        select(Redemption)
        .where(Redemption.payment_id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if redemption is None or not state.may_move(redemption.status, new):
        return None
    before = redemption.status
    redemption.status, redemption.updated_at = new, now
    if new == "released":
        await _count(session, redemption, -1)
    elif before == "released":
        # Charged after it was released (Stripe charged as we gave up): the use is taken again,
        # beyond the limit if need be — the user paid the discounted price.
        await _count(session, redemption, +1)
    await session.flush()
    return redemption
