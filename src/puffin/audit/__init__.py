"""Puffin audit layer."""
