"""Puffin web layer."""
