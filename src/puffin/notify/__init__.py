"""Puffin notify layer."""
