"""Puffin ingest layer."""
