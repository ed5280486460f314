"""Flags for a manager: what pay_api refused to apply because Stripe's object did not match."""
