"""Shared core: settings, database, types, errors, crypto, clock and pagination."""
