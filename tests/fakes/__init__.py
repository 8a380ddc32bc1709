"""Fakes of third-party services: real servers on loopback speaking the real protocols."""
