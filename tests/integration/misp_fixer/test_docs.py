"""docs/misp-fixer.md: its complete settings example and its systemd unit are the real ones."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from tests.conftest import REPO

from puffin.core.settings import Settings
from puffin.intel.misp_fixer.settings import FixerSettings

PUFFIN_BACKENDS = ("sqlite",)  # reads files only

DOC = REPO / "docs" / "misp-fixer.md"
UNIT = REPO / "packaging" / "systemd" / "puffin-misp-fixer.service"


def blocks(language: str) -> list[str]:
    """Return the fenced code blocks of the document in this language."""
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def example() -> tuple[str, dict[str, Any]]:
    (text,) = blocks("toml")
    return text, tomllib.loads(text.replace('"…"', '"placeholder"'))


def test_the_settings_example_names_every_setting_with_its_default() -> None:
    text, parsed = example()
    section = parsed["misp_fixer"]
    fixer_part = text[text.index("[misp_fixer]") :]
    commented = set(re.findall(r"^# (\w+) = ", fixer_part, re.M))
    defaults = FixerSettings().model_dump()

    assert set(FixerSettings.model_fields) == set(section) | commented
    assert not set(section) & commented
    differing = {name for name, value in section.items() if defaults[name] != value}
    assert differing == {"misp_url", "misp_key"}  # the two an operator must set
    assert FixerSettings.model_validate(section).misp_url == "https://misp.example.org"


def test_the_example_top_level_settings_are_puffins_own(tmp_path: Path) -> None:
    _, parsed = example()
    top = {name: value for name, value in parsed.items() if name != "misp_fixer"}
    top["data_dir"] = tmp_path  # the example's /var/lib/puffin is not writable here

    settings = Settings(**top, misp_fixer=parsed["misp_fixer"])

    assert set(top) <= set(Settings.model_fields)
    assert (settings.host, settings.port, settings.tls) == ("127.0.0.1", 8443, True)


def test_the_documented_systemd_unit_is_the_packaged_one() -> None:
    (documented,) = blocks("ini")
    packaged = UNIT.read_text(encoding="utf-8")

    assert documented[documented.index("[Unit]") :] == packaged[packaged.index("[Unit]") :]
    assert "ExecStart=/opt/puffin/venv/bin/puffin misp-fixer serve\n" in packaged
