"""Puffin agent layer."""
