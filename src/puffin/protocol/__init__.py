"""Puffin protocol layer."""
