"""Puffin detection layer."""
