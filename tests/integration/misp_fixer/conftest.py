"""Fixtures for the MISP fixer: a fake MISP on loopback and fixers wired to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.misp import FakeMisp

from puffin.intel.misp_fixer.classify import Classifier
from puffin.intel.misp_fixer.fixer import Fixer
from puffin.intel.misp_fixer.misp import MispGateway
from puffin.intel.misp_fixer.settings import FixerSettings

MakeFixer = Callable[..., Fixer]


@pytest.fixture
def misp() -> Iterator[FakeMisp]:
    """A fake MISP server on loopback, stopped after the test."""
    with FakeMisp() as server:
        yield server


@pytest.fixture
def make_fixer(misp: FakeMisp) -> MakeFixer:
    """Return a factory of fixers talking to the fake through the real PyMISP.

    The classifier is the real one with only the operator's list (no warninglists, no
    OpenTIP), so which values are false positives is known to the test.
    """

    def make(classifier: Any = None, **overrides: Any) -> Fixer:
        settings = FixerSettings(misp_url=misp.url, misp_key=misp.key, **overrides)
        return Fixer(
            settings=settings,
            gateway=MispGateway.from_settings(settings),
            classifier=classifier or list_classifier(settings),
        )

    return make


def list_classifier(settings: FixerSettings) -> Classifier:
    """The classifier with the operator's list only."""
    return Classifier(
        common_false_positives=settings.common_false_positives, warninglists=None, opentip=None
    )


def misp_events_dir(shared: Path) -> Path:
    """Where the real MISP events (PyMISP's fixtures) live in the shared data."""
    return shared / "misp" / "events"
