"""Puffin cli layer."""
