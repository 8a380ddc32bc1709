"""The fake MISP serves only what MISP's own API description has, the way PyMISP calls it.

Every route of the fake is reached here by a real PyMISP call; each path PyMISP asks for
must be a path of `../shared/data/misp/openapi.yaml` (CakePHP's `.json` extension and
named parameters such as `metadata:1` aside), and each method the fake accepts must be
the description's or, where the two disagree, PyMISP's (the data's README: trust PyMISP).
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.fakes.misp import FakeMisp

pytestmark = pytest.mark.conformance

# Paths the data's README says the description lacks, though MISP serves them.
MISSING_FROM_DESCRIPTION = ("/correlation_exclusions", "/tags/attachTagToObject", "/users/view/me")

# Where PyMISP's method is not the description's; the fake follows PyMISP.
PYMISP_METHOD_OVER_DESCRIPTION = {
    "/attributes/edit/{attributeId}": ("POST", ("PUT",)),
    "/attributes/delete/{attributeId}": ("POST", ("DELETE",)),
    "/events/edit/{eventId}": ("POST", ("PUT",)),
}

_METHODS = ("get", "post", "put", "delete", "patch", "head")


@pytest.fixture
def description(shared_data_dir: Path) -> dict[str, tuple[str, ...]]:
    """MISP's API description: each path template with its methods."""
    path = shared_data_dir / "misp" / "openapi.yaml"
    if not path.is_file():
        pytest.skip(f"{path} is absent; the shared data provides MISP's openapi.yaml")
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {
        template: tuple(method.upper() for method in operations if method in _METHODS)
        for template, operations in document["paths"].items()
    }


@pytest.fixture
def misp() -> Iterator[FakeMisp]:
    with FakeMisp() as server:
        yield server


def pymisp_calls(fake: FakeMisp) -> list[tuple[str, str]]:
    """Make every call the fake serves through the real PyMISP; return (method, path) of each."""
    from pymisp import PyMISP

    event_id = fake.add_event(
        {"Event": {"info": "Conformance", "Attribute": [{"type": "ip-dst", "value": "192.0.2.1"}],
                   "Object": [{"name": "domain-ip", "Attribute": [
                       {"type": "domain", "object_relation": "domain", "value": "a.example"}]}]}}
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyMISP warns about a plain-HTTP URL
        misp = PyMISP(fake.url, fake.key, ssl=False, timeout=30)  # getVersion, me, describeTypes
        checks: list[Any] = [
            misp.search(controller="events", eventid=event_id, metadata=True),
            misp.search(controller="attributes", eventid=event_id),
            misp.search(controller="objects", eventid=event_id),
        ]
        event = misp.get_event(event_id, pythonify=True)
        attribute = event.attributes[0]
        attribute.comment, attribute.timestamp = "checked", int(time.time()) + 5
        checks += [
            misp.direct_call(f"events/edit/{event_id}/metadata:1", {"Event": {"info": "Edited"}}),
            misp.update_event({"Event": {"info": "Edited again"}}, event_id=event_id),
            misp.update_attribute(attribute),
            misp.tag(attribute.uuid, "tlp:clear"),
            misp.add_sighting({"value": "192.0.2.1", "type": "1", "source": "conformance"}),
            misp.add_sighting({"type": "0"}, attribute=attribute),
            misp.correlation_exclusions(),
            misp.add_correlation_exclusion({"value": "192.0.2.1"}),
            misp.delete_attribute(attribute),
        ]  # fmt: skip
    failed = [answer for answer in checks if isinstance(answer, dict) and "errors" in answer]
    assert failed == [], "the fake refused a PyMISP call"
    return list(fake.calls)


def described_as(description: dict[str, tuple[str, ...]], path: str) -> str | None:
    """Return the description's template for a requested path, or None.

    CakePHP accepts a `.json` extension and `name:value` segments on any route, and its
    action names are case-insensitive (`restSearch`, `restsearch`).
    """
    plain = "/".join(part for part in path.removesuffix(".json").split("/") if ":" not in part)
    for template in description:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, plain, flags=re.IGNORECASE):
            return template
    return None


def missing_from_description(path: str) -> bool:
    return any(path == known or path.startswith(known + "/") for known in MISSING_FROM_DESCRIPTION)


def test_pymisp_reaches_every_route_of_the_fake(misp):
    calls = pymisp_calls(misp)
    for methods, pattern in FakeMisp.routes():
        reached = [path for method, path in calls if method in methods and pattern.fullmatch(path)]
        assert reached, f"no PyMISP call reaches {pattern.pattern}; add one to pymisp_calls()"


def test_every_path_the_fake_serves_is_in_misps_api_description(misp, description):
    calls = pymisp_calls(misp)
    undescribed = [
        path
        for _, path in calls
        if not missing_from_description(path) and described_as(description, path) is None
    ]
    assert undescribed == []
    assert {path for _, path in calls if missing_from_description(path)} == {
        "/correlation_exclusions",
        "/correlation_exclusions/add",
        "/tags/attachTagToObject",
        "/users/view/me",
    }
    for known in MISSING_FROM_DESCRIPTION:  # if MISP documents one, move it out of the list
        assert not any(t.startswith(known) for t in description), known


def test_the_fake_accepts_the_descriptions_methods_or_pymisps(misp, description):
    calls = pymisp_calls(misp)
    disagreements: dict[str, tuple[str, tuple[str, ...]]] = {}
    for methods, pattern in FakeMisp.routes():
        reached = [(method, path) for method, path in calls if pattern.fullmatch(path)]
        pymisp_methods = {method for method, _ in reached}
        for _, path in reached:
            template = described_as(description, path)
            if template is None:
                continue  # one of the paths missing from the description
            for method in methods:
                if method in description[template]:
                    continue
                assert method in pymisp_methods, f"{method} {template}: neither MISP nor PyMISP"
                disagreements[template] = (method, description[template])
    assert disagreements == PYMISP_METHOD_OVER_DESCRIPTION
