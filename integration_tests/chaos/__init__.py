"""The chaos run (`make chaos`, `scripts/chaos.py`): users, the moving clock, the fault injector
and the final audit, each in its own module. Black-box like every integration test: it speaks
HTTP to the running stack and to Stripe (localstripe), and never imports service code."""
