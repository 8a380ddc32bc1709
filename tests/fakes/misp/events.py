"""Events of any size with a realistic mix of indicators, for the fake MISP and benchmarks."""

from __future__ import annotations

import ipaddress
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

from tests.fakes.misp.store import HOST_ORG

PUBLIC_RESOLVERS = ("8.8.8.8", "8.8.4.4", "1.1.1.1", "9.9.9.9", "208.67.222.222")
POPULAR_DOMAINS = ("google.com", "microsoft.com", "amazon.com", "cloudflare.com", "github.com")
_TLDS = ("xyz", "top", "info", "ru", "net")


def generate_event(
    attributes: int,
    *,
    seed: int = 0,
    now: float | None = None,
    tlp_white: bool = True,
    old_share: float = 0.1,
    object_share: float = 0.1,
    org: Mapping[str, str] = HOST_ORG,
) -> dict[str, Any]:
    """Return a MISP event of `attributes` attributes with a realistic mix.

    The mix cycles through public resolvers (8.8.8.8 first), popular domains (some as
    sub-domains),
    random IPs and domains, hashes, URLs, comments and e-mail subjects, with flags that
    are often wrong (IDS off on IPs, correlation on for comments); `old_share` of the
    attributes are a month old and `object_share` sit in file objects.
    """
    rng = random.Random(seed)
    stamp = int(now if now is not None else time.time())
    top: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    index = 0
    while index < attributes:
        attribute = _generated_attribute(rng, index)
        old = index > 0 and rng.random() < old_share  # the first one is always recent
        age = 30 * 86400 if old else rng.randint(0, 3600)
        attribute["timestamp"] = str(stamp - age)
        attribute["uuid"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        hashed = attribute["type"] in {"sha256", "md5", "sha1"}
        if hashed and index + 1 < attributes and rng.random() < object_share:
            objects.append(_file_object(rng, attribute, stamp - age))  # a file name and a hash
            index += 2
        else:
            top.append(attribute)
            index += 1
    tags = [{"name": "tlp:white"}] if tlp_white else [{"name": "tlp:amber"}]
    return {
        "Event": {
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "info": f"Generated event with {attributes} attributes",
            "date": time.strftime("%Y-%m-%d", time.gmtime(stamp)),
            "threat_level_id": "2",
            "analysis": "1",
            "distribution": "1",
            "published": False,
            "timestamp": str(stamp),
            "Orgc": dict(org),
            "Org": dict(org),
            "Tag": tags,
            "Attribute": top,
            "Object": objects,
        }
    }


def _generated_attribute(rng: random.Random, index: int) -> dict[str, Any]:
    """Return the index-th attribute of the mix (type, value and its flags)."""
    choice = index % 10
    if choice == 0:
        resolver = PUBLIC_RESOLVERS[(index // 10) % len(PUBLIC_RESOLVERS)]
        kind, value = rng.choice(("ip-dst", "ip-src")), resolver
    elif choice == 1:
        domain = rng.choice(POPULAR_DOMAINS)
        kind, value = rng.choice((("domain", domain), ("hostname", f"www.{domain}")))
    elif choice in (2, 3):
        kind, value = rng.choice(("ip-dst", "ip-src", "ip-dst|port")), _random_ip(rng)
        if kind == "ip-dst|port":
            value = f"{value}|{rng.choice((443, 8080, 4444))}"
    elif choice == 4:
        kind, value = "domain", f"{_word(rng)}-{_word(rng)}.{rng.choice(_TLDS)}"
    elif choice in (5, 6):
        kind = rng.choice(("sha256", "md5", "sha1", "filename|sha256"))
        value = _hash(rng, kind)
    elif choice == 7:
        kind, value = "url", f"http://{_word(rng)}.{rng.choice(_TLDS)}/{_word(rng)}.php"
    elif choice == 8:
        kind, value = "comment", f"seen in campaign {_word(rng)} #{index}"
    else:
        kind, value = "email-subject", f"Invoice {rng.randint(1000, 99999)}"
    return {
        "type": kind,
        "category": "Network activity" if kind.startswith(("ip", "domain", "url")) else "Other",
        "value": value,
        "to_ids": rng.random() < 0.4,
        "disable_correlation": rng.random() < 0.2,
        "comment": rng.choice(("", "", "from sandbox report")),
    }


def _file_object(rng: random.Random, hashed: dict[str, Any], stamp: int) -> dict[str, Any]:
    filename = {
        "type": "filename",
        "category": "Payload delivery",
        "value": f"{_word(rng)}.exe",
        "to_ids": False,
        "object_relation": "filename",
        "timestamp": str(stamp),
        "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    }
    hashed = {**hashed, "category": "Payload delivery", "object_relation": hashed["type"]}
    return {
        "name": "file",
        "meta-category": "file",
        "description": "File object describing a file with meta-information",
        "template_uuid": "688c46fb-5edb-40a3-8273-1af7923e2215",
        "template_version": "25",
        "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "timestamp": str(stamp),
        "distribution": "5",
        "sharing_group_id": "0",
        "comment": "",
        "Attribute": [filename, hashed],
    }


def _random_ip(rng: random.Random) -> str:
    while True:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global:
            return str(address)


def _hash(rng: random.Random, kind: str) -> str:
    digits = {"md5": 32, "sha1": 40}.get(kind.removeprefix("filename|"), 64)
    value = f"{rng.getrandbits(digits * 4):0{digits}x}"
    return f"{_word(rng)}.dll|{value}" if kind.startswith("filename|") else value


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(5, 10)))
