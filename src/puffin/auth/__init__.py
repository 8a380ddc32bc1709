"""Puffin auth layer."""
