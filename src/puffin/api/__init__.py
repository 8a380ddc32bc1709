"""Puffin api layer."""
