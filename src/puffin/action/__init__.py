"""Puffin action layer."""
