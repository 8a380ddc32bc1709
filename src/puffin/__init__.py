"""Puffin: an open-source managed detection and response platform."""

__version__ = "0.1.0"
