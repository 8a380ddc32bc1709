"""Puffin alert layer."""
