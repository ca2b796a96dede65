"""ICAP services: what a request URI's path selects."""
