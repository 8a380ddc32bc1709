"""Puffin intel layer."""
