"""Observability: logging and the transaction log, metrics, the health endpoint, sd_notify."""
