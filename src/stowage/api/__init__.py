"""HTTP API v1 (FastAPI): a thin adapter over the services."""
