"""The billing worker: `python -m billing.worker` (loop) or `python -m billing.worker --once`."""
