"""Agent footprint: RSS and CPU of a real agent process following a file at N lines/s.

Starts `puffin server run` and an enrolled `python -m puffin.agent run` on loopback,
appends lines to the followed file at the given rate, and samples the agent process
with psutil. The last line is one JSON object with `agent_rss_mb` and `agent_cpu_percent`
(percent of one core).

    python bench/agent.py --eps 100 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ingest import admin_key, free_port, start_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="puffin-agent-bench-") as tmp:
        root = Path(tmp)
        server_dir, agent_dir, log = root / "server", root / "agent", root / "app.log"
        server_dir.mkdir()
        key = admin_key(server_dir)
        port = free_port()
        server = start_server(server_dir, port)
        try:
            result = _measure(options, server_dir, agent_dir, log, port, key)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    print(
        f"agent at {options.eps:.0f} events/s: RSS peak {result['agent_rss_mb']} MB, "
        f"CPU {result['agent_cpu_percent']}% of a core, delivered {result['delivered']}"
    )
    print(json.dumps(result))


def _measure(options, server_dir, agent_dir, log, port, key) -> dict[str, float | int]:  # type: ignore[no-untyped-def]
    base = f"https://127.0.0.1:{port}"
    verify = str(server_dir / "tls" / "server.crt")
    token = httpx.post(
        f"{base}/api/v1/enrollment-tokens",
        json={},
        headers={"Authorization": f"Bearer {key}"},
        verify=verify,
    ).json()["token"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "puffin.agent",
            "enroll",
            "--server",
            base,
            "--token",
            token,
            "--state-dir",
            str(agent_dir),
        ],
        check=True,
        capture_output=True,
    )
    log.touch()
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "puffin.agent",
            "run",
            "--state-dir",
            str(agent_dir),
            "--log",
            str(log),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    process = psutil.Process(agent.pid)
    time.sleep(3)  # start-up is not the steady state
    cpu_before = process.cpu_times()
    started = time.monotonic()
    written, peak = 0, 0.0
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
            peak = max(peak, process.memory_info().rss / 2**20)
            time.sleep(0.1)
    cpu_after = process.cpu_times()
    busy = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    agent.send_signal(signal.SIGINT)
    agent.wait(timeout=30)
    return {
        "events_per_second": options.eps,
        "seconds": options.seconds,
        "written": written,
        "delivered": _count(base, verify, key),
        "agent_rss_mb": round(peak, 1),
        "agent_cpu_percent": round(100 * busy / options.seconds, 2),
    }


def _count(base: str, verify: str, key: str) -> int:
    response = httpx.get(
        f"{base}/api/v1/events",
        params={"limit": 1},
        headers={"Authorization": f"Bearer {key}"},
        verify=verify,
    )
    return int(response.json()["total"])


if __name__ == "__main__":
    main()
