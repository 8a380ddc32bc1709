"""Agent footprint: RSS and CPU of a real agent process following a file at N lines/s.

Starts `puffin server run` and an enrolled `python -m puffin.agent run` on loopback,
appends lines to the followed file at the given rate, and samples the agent process
with psutil. With `--collectors` the agent also runs FIM (scheduled and real-time) on a
folder of `--fim-files` files, one of which changes every second, rootcheck with every
check against the real system, and inventory; the measured window then starts once the
start-up work is done (FIM baseline, the first rootcheck run, the first inventory), and
that start-up is reported apart. Peak RSS covers the whole run, start-up included.

The last line is one JSON object with `agent_rss_mb` and `agent_cpu_percent` (percent of
one core over the measured window).

    python bench/agent.py --eps 100 --seconds 60
    python bench/agent.py --eps 100 --seconds 60 --collectors
"""

from __future__ import annotations

import argparse
import json
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

# What the server must hold before the collectors' start-up work counts as done.
START_UP_MARKERS = ("baseline built", "rootcheck finished", "inventory:")


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
    """Peak RSS and CPU time of one process."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_mb = 0.0

    def sample(self) -> None:
        self.peak_mb = max(self.peak_mb, self.process.memory_info().rss / 2**20)

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--collectors", action="store_true", help="also run FIM, rootcheck and inventory"
    )
    parser.add_argument("--fim-files", type=int, default=1000, help="files in the FIM folder")
    options = parser.parse_args()
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
    mode = "with FIM, rootcheck and inventory" if options.collectors else "log file only"
    print(
        f"agent at {options.eps:.0f} events/s, {mode}: RSS peak {result['agent_rss_mb']} MB, "
        f"CPU {result['agent_cpu_percent']}% of a core, delivered {result['delivered']}"
    )
    if options.collectors:
        print(
            f"start-up (FIM baseline of {options.fim_files} files, first rootcheck run, "
            f"inventory): {result['startup_seconds']} s, {result['startup_cpu_seconds']} s CPU"
        )
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
        ],
        check=True,
        capture_output=True,
    )


def _collector_config(root: Path, files: int) -> Path:
    """Write the agent's local configuration: FIM on a fresh folder, rootcheck, inventory."""
    watched = root / "watched"
    watched.mkdir()
    for index in range(files):
        (watched / f"file{index:05d}.conf").write_text(f"setting_{index} = {'x' * 200}\n")
    config = root / "agent.json"
    config.write_text(
        json.dumps(
            {
                "fim": {"paths": [str(watched)], "realtime": [str(watched)]},
                "rootcheck": {},
                "inventory": {},
            }
        )
    )
    return config


def _start_agent(agent_dir: Path, log: Path, config: Path | None) -> subprocess.Popen[bytes]:
    command = [
        *(sys.executable, "-m", "puffin.agent", "run"),
        *("--state-dir", str(agent_dir), "--log", str(log)),
    ]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_startup(server: Server, sampler: Sampler) -> float:
    """Sample the agent until the server holds every start-up marker; return the seconds."""
    started = time.monotonic()
    while True:
        sampler.sample()
        if all(server.count(marker) for marker in START_UP_MARKERS):
            return time.monotonic() - started
        if time.monotonic() - started > 900:
            raise SystemExit(f"the agent's start-up work did not finish: {START_UP_MARKERS}")
        time.sleep(0.5)


def _measure(options: argparse.Namespace, root: Path, server: Server) -> dict[str, Any]:
    agent_dir, log = root / "agent", root / "app.log"
    _enrol(server, agent_dir)
    config = _collector_config(root, options.fim_files) if options.collectors else None
    log.touch()
    agent = _start_agent(agent_dir, log, config)
    sampler = Sampler(agent.pid)
    startup: dict[str, Any] = {}
    if options.collectors:
        seconds = _wait_for_startup(server, sampler)
        startup = {
            "startup_seconds": round(seconds, 1),
            "startup_cpu_seconds": round(sampler.cpu_seconds(), 1),
        }
    else:
        time.sleep(3)  # start-up is not the steady state
    sampler.sample()
    before = sampler.cpu_seconds()
    written, changed = _drive(options, log, root / "watched" if config else None, sampler)
    busy = sampler.cpu_seconds() - before
    agent.send_signal(signal.SIGINT)
    agent.wait(timeout=30)
    return {
        "events_per_second": options.eps,
        "seconds": options.seconds,
        "collectors": options.collectors,
        "written": written,
        "fim_changes": changed,
        "delivered": server.count(),
        **startup,
        "agent_rss_mb": round(sampler.peak_mb, 1),
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
