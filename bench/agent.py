"""Agent footprint: RSS and CPU of a real agent process following a file at N lines/s.

Starts `puffin server run` and an enrolled `python -m puffin.agent run` on loopback,
appends lines to the followed file at the given rate, and samples the agent process
with psutil. With `--collectors` the agent also runs what a user switches on: FIM with
its default system paths (scheduled) plus a folder of `--fim-files` files watched in
real time, one of which changes every second; rootcheck with every check against the
real system; inventory; and journald when `journalctl` is on PATH. The measured window
then starts once the start-up work is done (FIM baseline of every path, the first
rootcheck run, the first inventory), and that start-up is reported apart. Peak RSS
covers the whole run, start-up included; CPU is over the measured window only.

The last line is one JSON object with `agent_peak_rss_mb`, `agent_end_rss_mb`,
`agent_cpu_percent` (percent of one core over the measured window), the peak RSS of the
agent's child processes (journalctl) as `children_peak_rss_mb`, and the load average
before and after.

    python bench/agent.py --eps 100 --seconds 60
    python bench/agent.py --eps 100 --seconds 60 --collectors
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ingest import admin_key, free_port, start_server

from puffin.agent.fim import DEFAULT_PATHS, FimConfig
from puffin.core.tls import fingerprint_of_file


@dataclass
class Server:
    """The running server and how to ask it things."""

    base: str
    verify: str
    key: str

    def count(self, text: str | None = None) -> int:
        """Return how many stored events contain `text` (all events without it)."""
        params: dict[str, str | int] = {"limit": 1}
        if text:
            params["text"] = text
        response = httpx.get(
            f"{self.base}/api/v1/events",
            params=params,
            headers={"Authorization": f"Bearer {self.key}"},
            verify=self.verify,
            timeout=30,
        )
        response.raise_for_status()
        return int(response.json()["total"])


class Sampler:
    """Peak RSS and CPU time of one process, and the peak RSS of its children."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_mb = self.last_mb = self.children_peak_mb = 0.0

    def sample(self) -> None:
        self.last_mb = self.process.memory_info().rss / 2**20
        self.peak_mb = max(self.peak_mb, self.last_mb)
        children = 0.0
        for child in self.process.children(recursive=True):
            try:
                children += child.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                continue
        self.children_peak_mb = max(self.children_peak_mb, children)

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--collectors",
        action="store_true",
        help="also run FIM, rootcheck, inventory and journald (when available)",
    )
    parser.add_argument("--fim-files", type=int, default=1000, help="files in the FIM folder")
    parser.add_argument(
        "--fim-folder-only",
        action="store_true",
        help="FIM on the folder only, without the default system paths",
    )
    options = parser.parse_args()
    # The agent is stopped with SIGINT; a shell's background job inherits SIGINT ignored,
    # which the agent would inherit too, so give the children the default again.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if options.fim_files < 1 or options.eps <= 0 or options.seconds <= 0:
        parser.error("--fim-files, --eps and --seconds must be positive")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="puffin-agent-bench-") as tmp:
        root = Path(tmp)
        server_dir = root / "server"
        server_dir.mkdir()
        key = admin_key(server_dir)
        port = free_port()
        process = start_server(server_dir, port)
        server = Server(f"https://127.0.0.1:{port}", str(server_dir / "tls" / "server.crt"), key)
        try:
            result = _measure(options, root, server)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    result["load_before"] = [round(value, 2) for value in load_before]
    result["load_after"] = [round(value, 2) for value in os.getloadavg()]
    mode = f"with {', '.join(result['collector_names'])}" if options.collectors else "log only"
    print(
        f"agent at {options.eps:.0f} events/s, {mode}: RSS peak {result['agent_peak_rss_mb']} MB "
        f"(at the end {result['agent_end_rss_mb']} MB, children "
        f"{result['children_peak_rss_mb']} MB), CPU {result['agent_cpu_percent']}% of a core, "
        f"delivered {result['delivered']} of {result['written']} lines"
    )
    if options.collectors:
        print(
            f"start-up (FIM baseline of {result['fim_baseline_files']} files, first rootcheck "
            f"run, inventory): {result['startup_seconds']} s, "
            f"{result['startup_cpu_seconds']} s CPU"
        )
    print(f"load average before {result['load_before']}, after {result['load_after']}")
    print(json.dumps(result))


def _enrol(server: Server, agent_dir: Path) -> None:
    token = httpx.post(
        f"{server.base}/api/v1/enrollment-tokens",
        json={},
        headers={"Authorization": f"Bearer {server.key}"},
        verify=server.verify,
    ).json()["token"]
    subprocess.run(
        [
            *(sys.executable, "-m", "puffin.agent", "enroll"),
            *("--server", server.base, "--token", token, "--state-dir", str(agent_dir)),
            *("--fingerprint", fingerprint_of_file(Path(server.verify))),
        ],
        check=True,
        capture_output=True,
    )


def _collector_config(root: Path, options: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """Write the agent's local configuration: FIM (system paths and a watched folder),
    rootcheck, inventory and journald; return it with what the run should wait for."""
    watched = root / "watched"
    watched.mkdir()
    for index in range(options.fim_files):
        (watched / f"file{index:05d}.conf").write_text(f"setting_{index} = {'x' * 200}\n")
    paths = [str(watched)] if options.fim_folder_only else [*DEFAULT_PATHS, str(watched)]
    sections: dict[str, Any] = {
        "fim": {"paths": paths, "realtime": [str(watched)]},
        "rootcheck": {},
        "inventory": {},
    }
    if shutil.which("journalctl"):
        sections["journald"] = {}
    config = root / "agent.json"
    config.write_text(json.dumps(sections))
    roots = FimConfig.from_mapping(sections["fim"]).scan_roots()
    expected = {"baseline built": len(roots), "rootcheck finished": 1, "inventory:": 1}
    return config, {"sections": sorted(sections), "markers": expected}


def _start_agent(agent_dir: Path, log: Path, config: Path | None) -> subprocess.Popen[bytes]:
    command = [
        *(sys.executable, "-m", "puffin.agent", "run"),
        *("--state-dir", str(agent_dir), "--log", str(log)),
    ]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_startup(server: Server, sampler: Sampler, markers: dict[str, int]) -> float:
    """Sample the agent until the server holds every start-up marker; return the seconds."""
    started = time.monotonic()
    while True:
        sampler.sample()
        if all(server.count(marker) >= wanted for marker, wanted in markers.items()):
            return time.monotonic() - started
        if time.monotonic() - started > 900:
            raise SystemExit(f"the agent's start-up work did not finish: {markers}")
        time.sleep(0.5)


def _baseline_files(server: Server) -> int:
    """Return how many files the FIM baselines hold, from the agent's own notices."""
    response = httpx.get(
        f"{server.base}/api/v1/events",
        params={"text": "baseline built", "limit": 100},
        headers={"Authorization": f"Bearer {server.key}"},
        verify=server.verify,
        timeout=30,
    )
    response.raise_for_status()
    total = 0
    for item in response.json()["items"]:
        found = re.search(r"baseline built: (\d+) files", item["full_log"])
        total += int(found.group(1)) if found else 0
    return total


def _measure(options: argparse.Namespace, root: Path, server: Server) -> dict[str, Any]:
    agent_dir, log = root / "agent", root / "app.log"
    _enrol(server, agent_dir)
    config, plan = _collector_config(root, options) if options.collectors else (None, {})
    log.touch()
    agent = _start_agent(agent_dir, log, config)
    sampler = Sampler(agent.pid)
    startup: dict[str, Any] = {"collector_names": plan.get("sections", [])}
    if options.collectors:
        seconds = _wait_for_startup(server, sampler, plan["markers"])
        startup |= {
            "startup_seconds": round(seconds, 1),
            "startup_cpu_seconds": round(sampler.cpu_seconds(), 1),
            "fim_baseline_files": _baseline_files(server),
        }
    else:
        time.sleep(3)  # start-up is not the steady state
    sampler.sample()
    before = sampler.cpu_seconds()
    written, changed = _drive(options, log, root / "watched" if config else None, sampler)
    busy = sampler.cpu_seconds() - before
    time.sleep(6)  # the last batch goes out within 5 s
    sampler.sample()
    agent.send_signal(signal.SIGINT)
    try:
        agent.wait(timeout=30)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait(timeout=30)
        raise SystemExit("the agent did not stop within 30 s of SIGINT") from None
    return {
        "events_per_second": options.eps,
        "seconds": options.seconds,
        "collectors": options.collectors,
        "written": written,
        "fim_changes": changed,
        "delivered": server.count("Failed password"),
        **startup,
        "agent_peak_rss_mb": round(sampler.peak_mb, 1),
        "agent_end_rss_mb": round(sampler.last_mb, 1),
        "children_peak_rss_mb": round(sampler.children_peak_mb, 1),
        "agent_cpu_percent": round(100 * busy / options.seconds, 2),
    }


def _drive(
    options: argparse.Namespace, log: Path, watched: Path | None, sampler: Sampler
) -> tuple[int, int]:
    """Write lines at the rate (and change one watched file a second); sample meanwhile."""
    started = time.monotonic()
    written = changed = 0
    with log.open("a") as handle:
        while (elapsed := time.monotonic() - started) < options.seconds:
            due = int(elapsed * options.eps)
            handle.write(
                "".join(
                    f"Nov 22 10:00:00 host sshd[1]: Failed password for u{i} from 198.51.100.1\n"
                    for i in range(written, due)
                )
            )
            handle.flush()
            written = due
            if watched is not None and changed < int(elapsed):
                target = watched / f"file{changed % options.fim_files:05d}.conf"
                with target.open("a") as edited:
                    edited.write(f"changed = {changed}\n")
                changed += 1
            sampler.sample()
            time.sleep(0.1)
    return written, changed


if __name__ == "__main__":
    main()
