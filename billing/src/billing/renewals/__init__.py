"""Renewals: a subscription's next period charged off-session with the saved card, dunning with
grace when it does not go through. See docs/design.md ("Renewals")."""
