"""Settling payments with pay_api: registering a payment, and applying what pay_api reports — the
answers to billing's own calls and the events of its outbox — through the payment and refund state
machines. It sits above `billing.payments` and `billing.refunds` (it uses both; they use neither it
nor each other's services).
"""
