"""Crash points for the fault tests: the process kills itself (SIGKILL) at a named point.

Off unless PAY_API_FAILPOINTS_DIR is set (the integration tests set it). A test arms a point by
creating the file `<dir>/<name>`; the first process to reach the point removes the file and dies
there, exactly as a power cut would leave it: no cleanup, no rollback beyond what PostgreSQL does.

A file that names a subject (one line: a payment, refund or user id) fires only where that
subject is at stake, so a test can crash one user's charge while other work goes on around it.
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


def failpoint(name: str, *subjects: object) -> None:
    """Die here if `name` is armed for any process, or for one of `subjects` (ids)."""
    directory = os.environ.get("PAY_API_FAILPOINTS_DIR")
    if not directory:
        return
    armed = os.path.join(directory, name)
    try:
        with open(armed) as file:
            wanted = file.read().strip()
    except FileNotFoundError:
        return
    if wanted and wanted not in {str(subject) for subject in subjects}:
        return
    try:
        os.unlink(armed)  # only one process wins the unlink
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
