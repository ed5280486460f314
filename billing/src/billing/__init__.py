"""Cinema Billing: plans, subscriptions, payments, refunds, access decisions and the ledger."""
