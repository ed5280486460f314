"""Emails to users: composed in the transaction that caused them (a transactional outbox, topic
`email`), sent by the worker over SMTP (`smtp.py`), with signed links to pay_api's pages."""
