"""Puffin endpoint layer."""
