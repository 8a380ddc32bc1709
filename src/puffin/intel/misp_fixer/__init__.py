"""The MISP event fixer: flags false-positive indicators before MISP publishes an event."""
