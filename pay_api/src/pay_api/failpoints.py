"""Crash points for the fault tests: the process kills itself (SIGKILL) at a named point.

Off unless PAY_API_FAILPOINTS_DIR is set (the integration tests set it). A test arms a point by
creating the file `<dir>/<name>`; the first process to reach the point removes the file and dies
there, exactly as a power cut would leave it: no cleanup, no rollback beyond what PostgreSQL does.
"""

from __future__ import annotations

import os
import signal

# Named so the tests and the code agree on them.
BEFORE_CONFIRM = "charge.before_confirm"  # the intent id is stored; Stripe not asked to charge
AFTER_CONFIRM = "charge.after_confirm"  # Stripe charged; our transaction not committed
AFTER_COMMIT = "outbox.after_commit"  # state and outbox row committed; billing not told
BEFORE_REFUND = "refund.before_stripe"  # refund row stored; Stripe not asked
AFTER_REFUND = "refund.after_stripe"  # Stripe refunded; our transaction not committed


def failpoint(name: str) -> None:
    directory = os.environ.get("PAY_API_FAILPOINTS_DIR")
    if not directory:
        return
    try:
        os.unlink(os.path.join(directory, name))  # only one process wins the unlink
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
