"""Puffin case layer."""
