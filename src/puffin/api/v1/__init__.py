"""Puffin's own REST API, version 1."""
