"""Puffin worker layer."""
