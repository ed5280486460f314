"""gunicorn settings of pay_api (read from the working directory, or `gunicorn -c`).

Processes and threads come from the environment so compose and `make up` share this file.
"""

import os

workers = int(os.environ.get("PAY_API_WEB_WORKERS", "2"))
threads = int(os.environ.get("PAY_API_WEB_THREADS", "4"))
# A Stripe call may take PAY_API_STRIPE_TIMEOUT (20 s) with retries; never cut a request there.
timeout = 60
# Behind nginx: trust its X-Forwarded-* headers.
forwarded_allow_ips = "*"


def child_exit(server, worker) -> None:
    """prometheus-client multiprocess mode: drop a dead process's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
