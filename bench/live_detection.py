"""Live detection latency: from an event delivered to its alert visible in the API and SSE.

Starts `puffin server run` (HTTPS, embedded SQLite, syslog on UDP) in a temporary data
directory, enrols one agent, and opens the alerts stream (`/api/v1/alerts/stream`,
Server-Sent Events, filtered to one rule) as the console's Alerts page does. Then, one
event at a time, it sends a root login over SSH — alternately as an agent batch over
HTTPS and as a syslog datagram — and measures, from just before the send:

- **api**: until `GET /api/v1/alerts` lists the new alert (polled every 10 ms);
- **sse**: until the stream delivers it (the stream itself checks twice a second).

Each event raises its own alert (the rule has no dedupe), so the n-th alert belongs to
the n-th event. Prints p50/p99 per path and in all; the last line is one JSON object.

    python bench/live_detection.py [--events 100] [--gap 0.3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ingest import admin_key, enrol_agents, free_port, start_server

ROOT_LOGIN = "9a32b578-5d3c-4ff8-adea-93b7e5d31fba"  # built-in "Root login over SSH"
POLL_SECONDS = 0.01
WAIT_SECONDS = 30.0


@dataclass
class StreamWatcher:
    """Reads the alerts stream in a thread and notes when each new alert arrived."""

    client: httpx.Client
    arrivals: dict[str, float] = field(default_factory=dict)
    opened: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        url = f"/api/v1/alerts/stream?rule_id={ROOT_LOGIN}&max_seconds=3600"
        with self.client.stream("GET", url, timeout=None) as response:
            response.raise_for_status()
            kind = ""
            for line in response.iter_lines():
                self.opened.set()
                if self.stop.is_set():
                    return
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: ") and kind == "alert":
                    alert_id = json.loads(line.removeprefix("data: "))["id"]
                    self.arrivals.setdefault(alert_id, time.monotonic())


def _login_line(index: int) -> str:
    stamp = time.strftime("%b %e %H:%M:%S", time.gmtime())
    return (
        f"{stamp} bench-host sshd[{2000 + index}]: Accepted password for root "
        f"from 198.51.100.{index % 250 + 1} port {40000 + index} ssh2"
    )


def _send_agent(client: httpx.Client, agent: dict[str, str], index: int, sequence: int) -> None:
    event = {"module": "logcollector", "location": "/var/log/auth.log"}
    body = {"events": [{**event, "full_log": _login_line(index), "sent_at": time.time()}]}
    response = client.post(
        "/api/agent/v1/events",
        content=gzip.compress(json.dumps(body).encode()),
        headers={
            **agent,
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
            "X-Puffin-Sequence": str(sequence),
        },
    )
    response.raise_for_status()


def _send_syslog(sender: socket.socket, port: int, index: int) -> None:
    sender.sendto(("<38>" + _login_line(index)).encode(), ("127.0.0.1", port))


def _new_alert(api: httpx.Client, known: set[str]) -> str | None:
    """Return the id of an alert of the rule not seen before, polling until it is listed."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        items = api.get("/api/v1/alerts", params={"rule_id": ROOT_LOGIN, "limit": 5}).json()
        for item in items["items"]:
            if item["id"] not in known:
                return str(item["id"])
        time.sleep(POLL_SECONDS)
    return None


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50_s": 0.0, "p99_s": 0.0, "max_s": 0.0}
    p99 = ordered[max(0, round(len(ordered) * 0.99) - 1)]
    return {
        "p50_s": round(statistics.median(ordered), 3),
        "p99_s": round(p99, 3),
        "max_s": round(ordered[-1], 3),
    }


def measure(
    base: str, verify: ssl.SSLContext, key: str, udp_port: int, args: argparse.Namespace
) -> tuple[dict[str, dict[str, list[float]]], int]:
    """Send the events one at a time; return latencies by path and view, and misses."""
    [agent] = enrol_agents(base, verify, key, 1)
    headers = {"Authorization": f"Bearer {key}"}
    api = httpx.Client(base_url=base, verify=verify, headers=headers, timeout=30)
    gateway = httpx.Client(base_url=base, verify=verify, timeout=30)
    watcher = StreamWatcher(httpx.Client(base_url=base, verify=verify, headers=headers))
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        if not watcher.opened.wait(WAIT_SECONDS):
            raise SystemExit("the alerts stream did not open")
        return _send_and_wait(api, gateway, agent, watcher, udp_port, args)
    finally:
        # An open stream would hold the server's graceful shutdown until it ends.
        watcher.stop.set()
        thread.join(timeout=5)
        for client in (api, gateway, watcher.client):
            client.close()


def _send_and_wait(
    api: httpx.Client,
    gateway: httpx.Client,
    agent: dict[str, str],
    watcher: StreamWatcher,
    udp_port: int,
    args: argparse.Namespace,
) -> tuple[dict[str, dict[str, list[float]]], int]:
    latencies: dict[str, dict[str, list[float]]] = {
        path: {"api": [], "sse": []} for path in ("agent", "syslog")
    }
    known: set[str] = set()
    missed = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for index in range(args.events):
            path = "agent" if index % 2 == 0 else "syslog"
            started = time.monotonic()
            if path == "agent":
                _send_agent(gateway, agent, index, index // 2 + 1)
            else:
                _send_syslog(sender, udp_port, index)
            alert_id = _new_alert(api, known)
            if alert_id is None:
                missed += 1
                continue
            latencies[path]["api"].append(time.monotonic() - started)
            known.add(alert_id)
            deadline = time.monotonic() + WAIT_SECONDS
            while alert_id not in watcher.arrivals and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
            if alert_id in watcher.arrivals:
                latencies[path]["sse"].append(watcher.arrivals[alert_id] - started)
            time.sleep(args.gap)
    return latencies, missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100, help="events to send, one at a time")
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between events")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="puffin-bench-") as tmp:
        data_dir = Path(tmp)
        port, udp_port = free_port(), free_port()
        key = admin_key(data_dir)
        # start_server passes this process's environment on to the server.
        os.environ.update(PUFFIN_SYSLOG_HOST="127.0.0.1", PUFFIN_SYSLOG_UDP_PORT=str(udp_port))
        server = start_server(data_dir, port)
        try:
            base = f"https://127.0.0.1:{port}"
            verify = ssl.create_default_context(cafile=str(data_dir / "tls" / "server.crt"))
            print(f"server up on {base}; sending {args.events} events", flush=True)
            latencies, missed = measure(base, verify, key, udp_port, args)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    result: dict[str, object] = {"events": args.events, "missed": missed}
    for view in ("api", "sse"):
        every = latencies["agent"][view] + latencies["syslog"][view]
        result[view] = _percentiles(every)
        for path in ("agent", "syslog"):
            result[f"{view}_{path}"] = _percentiles(latencies[path][view])
    for view in ("api", "sse"):
        for path in ("agent", "syslog"):
            figures = result[f"{view}_{path}"]
            assert isinstance(figures, dict)
            print(
                f"{view:>3} via {path:<6} p50={figures['p50_s']:.3f}s "
                f"p99={figures['p99_s']:.3f}s max={figures['max_s']:.3f}s"
            )
    print(f"missed (no alert within {WAIT_SECONDS:.0f} s): {missed}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
