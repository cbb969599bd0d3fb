"""Observability: run records, per-run log capture, metrics and tracing."""
