"""Observability: logging (metrics and health arrive with operations work)."""
