"""Delivery: real MIME messages, the compliance screen, SMTP or an ESP bundle, the ledger that makes a send exactly-once."""
