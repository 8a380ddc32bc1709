"""A real agent process feeds a real server; the Agents and Events pages show what it sent.

The admin creates the enrolment token in the console, a `python -m puffin.agent` process
enrols with it, tails a log file, watches a FIM folder and runs rootcheck, and Chromium
finds the agent, a tailed line and a FIM change through the pages an analyst uses.
"""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from puffin import __version__

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

AGENTS_SCREENSHOT = Path("/tmp/puffin-agents-live.png")
DETAIL_SCREENSHOT = Path("/tmp/puffin-agent-detail-live.png")
EVENTS_SCREENSHOT = Path("/tmp/puffin-events-live.png")
AGENT_NAME = "browser-endpoint"
WAIT_SECONDS = 60


@pytest.fixture
def endpoint(tmp_path: Path) -> dict[str, Path]:
    """An endpoint's files: a log to tail, a folder to watch, a root with a planted rootkit."""
    watched = tmp_path / "etc"
    watched.mkdir()
    (watched / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    fake_root = tmp_path / "root"
    signatures = _signatures()
    planted = fake_root / signatures["path"].lstrip("/")
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text("x")
    log = tmp_path / "app.log"
    log.write_text("Dec  4 09:00:00 web1 sshd[77]: Server listening on 0.0.0.0 port 22.\n")
    config = tmp_path / "agent.json"
    config.write_text(
        json.dumps(
            {
                "fim": {"paths": [str(watched)], "realtime": [str(watched)]},
                "rootcheck": {"checks": ["files"], "root": str(fake_root)},
                "inventory": {},
            }
        )
    )
    return {"state": tmp_path / "agent", "log": log, "watched": watched, "config": config}


def _signatures() -> dict[str, str]:
    from importlib import resources

    text = resources.files("puffin.agent").joinpath("rootcheck_signatures.json").read_text()
    first: dict[str, str] = json.loads(text)["files"][0]
    return first


def _create_token(page: Any, server: Any) -> tuple[str, str]:
    """Create an enrolment token on the Agents page; return it and the shown fingerprint."""
    page.goto(f"{server.url}/agents")
    page.get_by_text("No agents yet.").wait_for()
    page.locator("#field-name").fill("browser test")
    page.locator("#field-max_uses").fill("1")
    page.get_by_role("button", name="Create token").click()
    page.get_by_role("heading", name="Enrolment token created").wait_for()
    token = page.locator("#enrol-token").inner_text().strip()
    assert f"--server {server.url} --token {token}" in page.locator("#enrol-command").inner_text()
    fingerprint = page.locator("code.fingerprint").nth(1).inner_text().strip()
    return token, fingerprint


@pytest.fixture
def agent_process(
    endpoint: dict[str, Path], live_server: Any, page: Any, sign_in: Any
) -> Iterator[subprocess.Popen[str]]:
    """Sign in, enrol a real agent with a token made in the console, and run it."""
    sign_in(page, live_server, "admin", live_server.admin_password)
    token, fingerprint = _create_token(page, live_server)
    enrolled = subprocess.run(
        [
            *(sys.executable, "-m", "puffin.agent", "enroll"),
            *("--server", live_server.url, "--token", token, "--name", AGENT_NAME),
            *("--fingerprint", fingerprint, "--state-dir", str(endpoint["state"])),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    agent = subprocess.Popen(
        [
            *(sys.executable, "-m", "puffin.agent", "run"),
            *("--state-dir", str(endpoint["state"]), "--log", str(endpoint["log"])),
            *("--config", str(endpoint["config"])),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield agent
    agent.send_signal(signal.SIGINT)
    agent.communicate(timeout=30)


def _reload_until(page: Any, locator: Any, what: str) -> None:
    """Reload the page until the locator matches (the agent delivers every few seconds)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while locator.count() == 0:
        assert time.monotonic() < deadline, f"never shown: {what}"
        time.sleep(1)
        page.reload()


def _search_events(page: Any, server: Any, text: str) -> None:
    page.goto(f"{server.url}/events")
    page.get_by_label("Text in the log").fill(text)
    page.get_by_label("Time range").select_option("15m")
    with page.expect_navigation():
        page.get_by_role("button", name="Search").click()


def test_agents_and_events_pages_show_what_a_real_agent_sent(
    page, live_server, agent_process, endpoint
):
    page.goto(f"{live_server.url}/agents")
    row = page.locator("tbody tr", has_text=AGENT_NAME)
    _reload_until(page, row.locator(".badge", has_text="active"), "the agent as active")
    cells = row.locator("td")
    assert cells.nth(0).inner_text().strip() == AGENT_NAME
    assert cells.nth(1).inner_text().strip() == "active"
    assert cells.nth(2).inner_text().strip() == f"{platform.system()} {platform.release()}"
    assert cells.nth(3).inner_text().strip() == __version__
    assert cells.nth(4).inner_text().strip() == "127.0.0.1"
    page.screenshot(path=str(AGENTS_SCREENSHOT), full_page=True)

    row.get_by_role("link", name=AGENT_NAME).click()
    page.get_by_role("heading", name=AGENT_NAME).wait_for()
    agent_id = page.url.rsplit("/", 1)[1]
    assert uuid.UUID(agent_id)
    facts = page.locator("section.panel", has=page.get_by_role("heading", name="Facts"))
    assert facts.locator("dl.facts").get_by_text(agent_id).is_visible()
    recent = page.locator("section.panel", has_text="Recent events")
    _reload_until(page, recent.locator("td", has_text="Server listening"), "recent events")
    fim_panel = page.locator(
        "section.panel", has=page.get_by_role("heading", name="File integrity")
    )
    _reload_until(page, fim_panel.locator("dd", has_text=str(endpoint["watched"])), "FIM paths")
    inventory = page.locator("section.panel", has=page.get_by_role("heading", name="Inventory"))
    _reload_until(page, inventory.get_by_text(platform.node()), "the inventory snapshot")
    page.screenshot(path=str(DETAIL_SCREENSHOT), full_page=True)

    marker = f"Dec  4 09:01:00 web1 app[88]: browser marker {uuid.uuid4().hex}"
    with endpoint["log"].open("a") as handle:
        handle.write(marker + "\n")
    _search_events(page, live_server, marker.split(": ", 1)[1])
    found = page.locator("tbody tr", has_text=marker)
    _reload_until(page, found, "the line written to the tailed file")
    assert found.locator("td").nth(1).inner_text().strip() == AGENT_NAME
    assert found.locator("td").nth(2).inner_text().strip() == "logcollector"
    assert found.locator("td").nth(3).inner_text().strip() == str(endpoint["log"])

    # A change is only reported against a baseline, so wait for the first scan to finish.
    _search_events(page, live_server, "baseline built")
    _reload_until(page, page.locator("tbody tr", has_text="baseline built"), "the FIM baseline")
    watched_file = endpoint["watched"] / "passwd"
    with watched_file.open("a") as handle:
        handle.write("mallory:x:0:0::/root:/bin/bash\n")
    _search_events(page, live_server, str(watched_file))
    fim = page.locator("tbody tr", has_text="modified")
    _reload_until(page, fim, "the FIM event for the changed file")
    assert fim.first.locator("td").nth(2).inner_text().strip() == "fim"
    page.screenshot(path=str(EVENTS_SCREENSHOT), full_page=True)

    fim.first.get_by_role("link").click()
    page.get_by_text("mallory").first.wait_for()

    _search_events(page, live_server, f"the {_signatures()['rootkit']} rootkit uses this path")
    rootkit = page.locator("tbody tr", has_text="rootcheck")
    _reload_until(page, rootkit, "the rootcheck finding")
    assert agent_process.poll() is None, "the agent stopped"
