"""A stateful fake MISP: a real HTTP server on loopback answering what PyMISP asks.

It serves the calls the event fixer makes through PyMISP (connection checks, event,
attribute and object searches, event edits, tags, sightings, correlation exclusions)
with MISP's response shapes, checks the `Authorization` header, logs every write, and
can go down after a number of requests (the connection drops, then it refuses) and come
back with its data intact. `generate_event` builds events of any size with a realistic
mix of indicators; real MISP events (PyMISP's fixtures) can be loaded as they are.

The edit semantics follow MISP's: an attribute or object whose timestamp is not newer
than the stored one is skipped silently, an object's attribute sent at the top level of
the event is dropped, an event edit without `published` unpublishes the event.
"""

from tests.fakes.misp.events import POPULAR_DOMAINS, PUBLIC_RESOLVERS, generate_event
from tests.fakes.misp.server import DEFAULT_KEY, FakeMisp, WriteCall
from tests.fakes.misp.store import HOST_ORG

__all__ = [
    "DEFAULT_KEY",
    "HOST_ORG",
    "POPULAR_DOMAINS",
    "PUBLIC_RESOLVERS",
    "FakeMisp",
    "WriteCall",
    "generate_event",
]
