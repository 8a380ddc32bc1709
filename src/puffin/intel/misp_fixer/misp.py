"""A gateway to MISP over PyMISP: fetch an event page by page, apply edits in batches.

Every PyMISP call goes through one wrapper that turns connection failures and server
errors into `MispUnavailable` and MISP's own refusals into `MispRefused`, each with a
reason an operator can act on (and never the API key).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import requests
from pymisp import PyMISP
from pymisp.exceptions import MISPServerError, PyMISPError

from puffin.core.errors import NotFound, PuffinError
from puffin.intel.misp_fixer.plan import EventSnapshot, tag_names
from puffin.intel.misp_fixer.settings import FixerSettings

log = logging.getLogger(__name__)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_OBJECT_FIELDS = (
    "id",
    "uuid",
    "name",
    "meta-category",
    "template_uuid",
    "template_version",
    "distribution",
    "sharing_group_id",
    "comment",
    "timestamp",
)


class MispError(PuffinError):
    """MISP could not do what the fixer asked."""

    status_code = 502
    title = "MISP error"


class MispUnavailable(MispError):
    """MISP could not be reached or failed on its side (network error, HTTP 5xx)."""

    title = "MISP unreachable"


class MispRefused(MispError):
    """MISP answered with a refusal (authentication, permissions, validation)."""

    title = "MISP refused the request"


class EventNotFound(NotFound):
    """MISP has no event with this id or UUID (or hides it from this key)."""


class MispGateway:
    """The MISP calls the fixer makes, batched, with their failures made explicit."""

    def __init__(
        self,
        *,
        url: str,
        key: str,
        verify_tls: bool | str = True,
        timeout_seconds: float = 60.0,
        page_size: int = 1000,
    ) -> None:
        self._url, self._key = url, key
        self._verify, self._timeout = verify_tls, timeout_seconds
        self.page_size = page_size
        self._client: PyMISP | None = None
        self.write_calls = 0

    @classmethod
    def from_settings(cls, settings: FixerSettings) -> MispGateway:
        """Build a gateway from the fixer's settings, or explain what is missing."""
        if (
            not settings.misp_url
            or not settings.misp_key
            or not settings.misp_key.get_secret_value()
        ):
            raise MispRefused("misp_url and misp_key must be set to reach MISP")
        verify: bool | str = settings.misp_verify_tls
        if verify and settings.misp_ca_file is not None:
            verify = str(settings.misp_ca_file)
        return cls(
            url=settings.misp_url,
            key=settings.misp_key.get_secret_value(),
            verify_tls=verify,
            timeout_seconds=settings.misp_timeout_seconds,
            page_size=settings.page_size,
        )

    def fetch_event(self, event_ref: str) -> EventSnapshot:
        """Return the event's metadata and all its live attributes, fetched in pages."""
        meta = self._event_meta(event_ref)
        attributes = self._attribute_pages(str(meta["id"]))
        orgc = meta.get("Orgc") or meta.get("Org") or {}
        return EventSnapshot(
            id=str(meta["id"]),
            uuid=str(meta.get("uuid", "")),
            info=str(meta.get("info", "")),
            org_name=str(orgc.get("name", "")),
            org_uuid=str(orgc.get("uuid", "")),
            tags=tuple(tag_names(meta)),
            attributes=attributes,
        )

    def fetch_objects(self, event_id: str) -> dict[str, dict[str, Any]]:
        """Return the event's objects (without their attributes) by object id."""
        found: dict[str, dict[str, Any]] = {}
        for page in self._pages("fetching the event's objects", "objects", event_id):
            for item in page:
                misp_object = item.get("Object", item)
                found[str(misp_object["id"])] = {
                    name: misp_object.get(name) for name in _OBJECT_FIELDS
                }
        return found

    def edit_event(self, *, event_id: str, body: Mapping[str, Any]) -> None:
        """Send one `events/edit` carrying changed attributes; ask only for metadata back."""
        self._write(
            f"editing event {event_id}",
            lambda misp: misp.direct_call(f"events/edit/{event_id}/metadata:1", dict(body)),
        )

    def add_false_positive_sightings(self, *, attribute_ids: Sequence[str], source: str) -> None:
        """Add one false-positive sighting to each attribute, in a single call.

        MISP's `sightings/add` takes a `|`-separated list of attribute ids, which
        scopes the sightings to exactly these attributes (by value it would sight the
        same value in every event).
        """
        body = {"id": "|".join(attribute_ids), "type": "1", "source": source}
        self._write(
            f"adding {len(attribute_ids)} false-positive sightings",
            lambda misp: misp.add_sighting(body),
        )

    def tag(self, *, uuid: str, tag: str) -> None:
        """Attach a tag to an event or attribute by UUID."""
        self._write(f"tagging {uuid} with {tag}", lambda misp: misp.tag(uuid, tag))

    def correlation_exclusion_values(self) -> frozenset[str]:
        """Return the values already on MISP's correlation exclusion list."""
        found = self._call(
            "reading correlation exclusions", lambda misp: misp.correlation_exclusions()
        )
        rows = found if isinstance(found, list) else []
        return frozenset(
            str(row.get("CorrelationExclusion", row).get("value", ""))
            for row in rows
            if isinstance(row, dict)
        )

    def add_correlation_exclusion(self, *, value: str, comment: str) -> None:
        """Add one value to MISP's (instance-wide) correlation exclusion list."""
        from pymisp import MISPCorrelationExclusion

        exclusion = MISPCorrelationExclusion()
        exclusion.from_dict(value=value, comment=comment)
        self._write(
            f"excluding {value} from correlation",
            lambda misp: misp.add_correlation_exclusion(exclusion),
        )

    def _event_meta(self, event_ref: str) -> dict[str, Any]:
        """Return the event without attributes, by numeric id or UUID."""
        event_ref = event_ref.strip()
        if _UUID.match(event_ref):
            query: dict[str, Any] = {"uuid": event_ref}
        elif event_ref.isdigit():
            query = {"eventid": event_ref}
        else:
            raise EventNotFound(f"{event_ref!r} is neither an event id nor a UUID")
        found = self._call(
            f"fetching event {event_ref}",
            lambda misp: misp.search(controller="events", metadata=True, **query),
        )
        events = [item.get("Event", item) for item in found or () if isinstance(item, dict)]
        if not events:
            raise EventNotFound(f"MISP has no event {event_ref} visible to this API key")
        return dict(events[0])

    def _attribute_pages(self, event_id: str) -> list[dict[str, Any]]:
        """Return every live attribute of the event, objects' included, with sightings."""
        attributes: list[dict[str, Any]] = []
        for page in self._pages("fetching attributes", "attributes", event_id):
            attributes.extend(page)
        return attributes

    def _pages(self, what: str, controller: str, event_id: str) -> Iterator[list[dict[str, Any]]]:
        """Yield restSearch result pages for one event until a page is not full."""
        page = 1
        while True:
            rows = self._call(
                f"{what} of event {event_id} (page {page})",
                partial(self._search_page, controller=controller, event_id=event_id, page=page),
            )
            yield rows
            if len(rows) != self.page_size:  # short, or a server that ignored the limit
                return
            page += 1

    def _search_page(
        self, misp: PyMISP, *, controller: str, event_id: str, page: int
    ) -> list[dict[str, Any]]:
        found = misp.search(
            controller=controller,
            eventid=event_id,
            page=page,
            limit=self.page_size,
            include_sightings=True if controller == "attributes" else None,
        )
        return _rows(found, controller)

    def _write(self, what: str, call: Callable[[PyMISP], Any]) -> Any:
        self.write_calls += 1
        return self._call(what, call)

    def _call(self, what: str, call: Callable[[PyMISP], Any]) -> Any:
        """Run one PyMISP call; turn every failure into a MispError with the reason."""
        try:
            result = call(self._misp())
        except MispError:
            raise
        except (requests.RequestException, MISPServerError, OSError) as error:
            raise MispUnavailable(
                f"MISP unreachable while {what}: {_short(_root_cause(error))}"
            ) from error
        except PyMISPError as error:
            raise MispRefused(f"MISP failed while {what}: {_short(error)}") from error
        if isinstance(result, dict) and "errors" in result:
            raise MispRefused(f"MISP refused {what}: {_reason(result['errors'])}")
        return result

    def _misp(self) -> PyMISP:
        """Connect on first use (PyMISP checks the server and the key when built)."""
        if self._client is None:
            try:
                self._client = PyMISP(
                    self._url,
                    self._key,
                    ssl=self._verify,
                    timeout=self._timeout,
                    tool="puffin-misp-fixer",
                )
            except PyMISPError as error:
                cause = _root_cause(error)
                if "Unable to connect" in error.message and cause is not error:
                    reason = _short(cause)
                    raise MispUnavailable(f"MISP unreachable at {self._url}: {reason}") from error
                reason = _short(error)
                raise MispRefused(f"MISP at {self._url} refused the API key: {reason}") from error
        return self._client


def _rows(found: Any, controller: str) -> list[dict[str, Any]]:
    """Return the result rows of a restSearch (attributes come wrapped, others as a list)."""
    if controller == "attributes" and isinstance(found, dict):
        found = found.get("Attribute", [])
    if not isinstance(found, list):
        raise MispRefused(f"MISP answered the {controller} search with {type(found).__name__}")
    return [row for row in found if isinstance(row, dict)]


def _reason(errors: Any) -> str:
    """Return MISP's reason from PyMISP's `(status, body)` error pair."""
    if isinstance(errors, (tuple, list)) and len(errors) == 2:
        status, body = errors
        if isinstance(body, dict):
            body = body.get("message") or body.get("errors") or body.get("name") or body
        return f"HTTP {status}: {body}"
    return str(errors)


def _root_cause(error: BaseException) -> BaseException:
    """Return the innermost exception behind a wrapped network error (the useful reason)."""
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = error.__cause__ or error.__context__ or getattr(error, "reason", None)
        if not isinstance(inner, BaseException):
            break
        error = inner
    return error


def _short(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
