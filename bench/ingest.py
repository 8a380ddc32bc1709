"""Ingest benchmark: many simulated agents send event batches to a live server on loopback.

Starts `puffin server run` (HTTPS, embedded SQLite) in a temporary data directory,
enrols N agents through the real gateway, then each agent sends gzip batches of its
events every interval for the given time. Like the real agent, each also sends a
keep-alive every `--keepalive` seconds (health counters, the configuration hash it
applies, which the server checks against the group configuration) and an inventory
snapshot every `--inventory-every` seconds (this machine's real inventory, which the
server also keeps on the agent's record); both start at a random point of their period,
as a fleet of agents started at different times does. Each simulated agent has its own
HTTPS connection, as real agents do. What they log is `--mix`: everyday server lines
(cron, systemd, sshd, sudo, firewall, web; few match a rule), or every line a failed SSH
login from addresses all agents share (every event matches, correlations fire).
Prints the sustained stored events per second, the p50/p99 latency from sending a batch
to its acknowledgement (which comes only after the batch is committed), the keep-alive
latency, the peak RSS and CPU of the server's processes together (the server and its
live detection process), and the CPU the load generator took from the same machine.
The last line is one JSON object.

    python bench/ingest.py --agents 1000 --eps 10 --seconds 60 [--mix fleet|attack]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import multiprocessing
import os
import random
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PUFFIN_DATA_DIR": str(data_dir), "PUFFIN_PORT": str(port)}
    env["PUFFIN_LOG_LEVEL"] = "WARNING"
    process = subprocess.Popen(
        [sys.executable, "-m", "puffin.cli.main", "server", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=sys.stderr,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if (data_dir / "tls" / "server.crt").exists() and _ready(data_dir, port):
            return process
        time.sleep(0.3)
    process.kill()
    raise SystemExit("the server did not start; run `puffin server run` by hand to see why")


def _ready(data_dir: Path, port: int) -> bool:
    context = ssl.create_default_context(cafile=str(data_dir / "tls" / "server.crt"))
    try:
        return httpx.get(f"https://127.0.0.1:{port}/healthz", verify=context, timeout=1).is_success
    except (httpx.HTTPError, OSError):
        return False


def admin_key(data_dir: Path) -> str:
    """Prepare the database and return an admin API key, made through the services."""
    from sqlalchemy import select

    from puffin.app import build_state, prepare_database
    from puffin.auth import credentials
    from puffin.auth.models import User
    from puffin.auth.schemas import ApiKeyCreate
    from puffin.core.db import transaction
    from puffin.core.settings import Settings

    state = build_state(Settings(data_dir=data_dir))
    prepare_database(state, lambda _message: None)
    with transaction(state.session_factory) as session:
        user = session.scalars(select(User).where(User.username == "admin")).one()
        info = credentials.open_session(session=session, user=user, ip=None, max_age_seconds=60)
        key = credentials.create_api_key(
            session=session, principal=info.principal, key_in=ApiKeyCreate(name="bench")
        )
    state.engine.dispose()
    return key.key


def enrol_agents(base: str, verify: ssl.SSLContext, key: str, count: int) -> list[dict[str, str]]:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, verify=verify, headers=headers, timeout=30) as client:
        token = client.post("/api/v1/enrollment-tokens", json={"max_uses": count}).json()["token"]
    agents = []
    with httpx.Client(base_url=base, verify=verify, timeout=30) as client:
        for index in range(count):
            response = client.post(
                "/api/agent/v1/enroll", json={"token": token, "name": f"bench-{index:05d}"}
            )
            if response.status_code != 201:
                raise SystemExit(f"enrolment failed: {response.status_code} {response.text}")
            body = response.json()
            agents.append(
                {
                    "X-Puffin-Agent": body["agent_id"],
                    "Authorization": f"Bearer {body['credential']}",
                }
            )
    return agents


def _health(sent: int) -> dict[str, object]:
    """A keep-alive's health report shaped like the real agent's (collectors included)."""
    collector = {"events": 12, "errors": 0, "last_error": None, "last_error_at": None}
    return {
        "queued": 0,
        "sent": sent,
        "dropped": 0,
        "quarantined": 0,
        "version": "bench",
        "tasks_waiting": 0,
        "last_delivery_error": None,
        "collectors": {
            "logs": {**collector, "running": True},
            "fim": {**collector, "running": True, "state": {"files": 2210, "scanning": False}},
            "rootcheck": {**collector, "running": True},
            "inventory": {**collector, "running": True, "state": {"interval": 3600}},
        },
    }


def inventory_event() -> dict[str, object]:
    """Return an inventory snapshot event of this machine, as the agent's collector sends."""
    from puffin.agent.inventory import InventoryCollector

    with tempfile.TemporaryDirectory() as tmp:
        inventory, _errors = InventoryCollector(Path(tmp)).snapshot()
    return {
        "module": "inventory",
        "title": "Inventory",
        "inventory": inventory,
        "full_log": f"inventory: {len(inventory.get('packages', []))} packages",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# What a fleet of Linux servers logs most of the time (our own lines in the usual formats
# of cron, systemd, sshd, sudo, the kernel firewall, dhclient and a web server), with
# weights: most lines match no rule, a few (an SSH login, a failed password from an
# address of the agent's own) match one now and then, as on hosts that face the internet.
FLEET_LINES: tuple[tuple[int, str], ...] = (
    (22, "CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"),
    (12, "CRON[{pid}]: (root) CMD (/usr/lib/sysstat/debian-sa1 1 1)"),
    (12, "systemd[1]: Started session-{n}.scope - Session {n} of User deploy."),
    (6, "systemd[1]: Starting apt-daily.service - Daily apt download activities..."),
    (
        18,
        "kernel: [{n}.{pid}] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56 "
        "SRC=203.0.113.{b} DST=10.0.{a}.{c} LEN=44 PROTO=TCP SPT={port} DPT=23 SYN",
    ),
    (5, "dhclient[{pid}]: DHCPACK of 10.0.{a}.{c} from 10.0.{a}.1"),
    (
        16,
        'nginx: 10.0.{a}.{b} - - [22/Nov/2026:10:00:00 +0000] "GET /api/v1/items/{n} HTTP/1.1" '
        '200 {port} "-" "Mozilla/5.0 (X11; Linux x86_64)"',
    ),
    (4, "sshd[{pid}]: pam_unix(sshd:session): session closed for user deploy"),
    (
        2,
        "sudo:   deploy : TTY=pts/0 ; PWD=/home/deploy ; USER=root ; "
        "COMMAND=/usr/bin/systemctl status nginx",
    ),
    (
        1,
        "sshd[{pid}]: Accepted publickey for deploy from 10.0.{a}.{b} port {port} ssh2: "
        "ED25519 SHA256:q2bY3k",
    ),
    (
        2,
        "sshd[{pid}]: Failed password for invalid user u{n} from 198.51.{a}.{c} port {port} ssh2",
    ),
)
# The old load: every line a failed SSH login, from 250 addresses shared by all agents.
ATTACK_LINES: tuple[tuple[int, str], ...] = (
    (
        1,
        "sshd[{pid}]: Failed password for invalid user u{n} from 198.51.100.{b} port {port} ssh2",
    ),
)
MIXES = {"fleet": FLEET_LINES, "attack": ATTACK_LINES}


def _events(
    agent: int,
    start: int,
    count: int,
    extra: list[dict[str, object]] | None = None,
    lines: tuple[tuple[int, str], ...] = FLEET_LINES,
) -> bytes:
    now = time.time()
    chosen = random.choices([line for _, line in lines], [w for w, _ in lines], k=count)
    events: list[dict[str, object]] = [
        {
            "full_log": f"Nov 22 10:00:00 host{agent} "
            + template.format(
                pid=1000 + i,
                n=start + i,
                a=agent % 250,
                b=(start + i) % 250,
                c=1 + agent // 250,
                port=40000 + (start + i) % 20000,
            ),
            "module": "logcollector",
            "location": "/var/log/syslog",
            "sent_at": now,
        }
        for i, template in enumerate(chosen)
    ]
    events += extra or []
    return gzip.compress(json.dumps({"events": events}).encode(), compresslevel=5)


class AgentConnection:
    """One simulated agent's kept-alive HTTPS connection, speaking just enough HTTP/1.1.

    The simulated agents run on the server's two cores, which real agents do not: httpx
    took about half a core at 10,000 events/s; this takes a fraction of that. Requests on
    one connection go one after the other, as the real agent sends them.
    """

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self._address = (host, port)
        self._context = context
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """Send one POST; return the status and the body. Raises OSError on failure."""
        async with self._lock:
            try:
                return await asyncio.wait_for(self._exchange(path, body, headers), 30)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                await self.close()  # the next request opens a new connection
                raise OSError(f"POST {path} failed") from None

    async def _exchange(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                *self._address, ssl=self._context, server_hostname="127.0.0.1"
            )
        assert self._reader is not None
        lines = [f"POST {path} HTTP/1.1", f"Host: {self._address[0]}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        answer = await self._reader.readexactly(length)
        return status, answer

    async def close(self) -> None:
        """Close the connection (a new one opens with the next request)."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


async def run_agents(
    base: str,
    cafile: str,
    agents: list[dict[str, str]],
    eps: float,
    seconds: float,
    interval: float,
    keepalive: float,
    inventory_every: float,
    inventory: dict[str, object],
    mix: str = "fleet",
) -> dict[str, object]:
    verify = ssl.create_default_context(cafile=cafile)
    host, _, port = base.removeprefix("https://").partition(":")
    latencies: list[float] = []
    keepalive_latencies: list[float] = []
    stored = acknowledged = 0
    errors = keepalive_errors = 0
    inventories = 0
    per_batch = max(1, round(eps * interval))
    cpu_started = time.process_time()
    # One connection per agent, as each real agent has.
    clients = [AgentConnection(host, int(port), verify) for _ in agents]
    try:
        # Agents start spread over one interval; count only the steady state after it.
        steady_from = time.monotonic() + interval
        end = steady_from + seconds

        async def agent_loop(index: int, headers: dict[str, str]) -> None:
            nonlocal stored, acknowledged, errors, inventories
            client = clients[index]
            sequence = 0
            next_inventory = time.monotonic() + random.uniform(0, inventory_every or 1)
            await asyncio.sleep(random.uniform(0, interval))
            while time.monotonic() < end:
                sequence += 1
                extra = []
                if inventory_every and time.monotonic() >= next_inventory:
                    extra, next_inventory = [inventory], next_inventory + inventory_every
                    inventories += 1
                body = _events(index, sequence * per_batch, per_batch, extra, MIXES[mix])
                started = time.monotonic()
                try:
                    status, answer = await client.post(
                        "/api/agent/v1/events",
                        body,
                        {
                            **headers,
                            "Content-Encoding": "gzip",
                            "Content-Type": "application/json",
                            "X-Puffin-Sequence": str(sequence),
                        },
                    )
                except OSError:
                    status, answer = 0, b""
                if status == 200:
                    count = int(json.loads(answer)["stored"])
                    acknowledged += count
                    if started >= steady_from:
                        stored += count
                        latencies.append(time.monotonic() - started)
                else:
                    errors += 1
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

        async def keepalive_loop(index: int, headers: dict[str, str]) -> None:
            nonlocal keepalive_errors
            client = clients[index]
            config_hash, sent = "", 0
            await asyncio.sleep(random.uniform(0, keepalive))
            while time.monotonic() < end:
                report = {
                    "health": _health(sent),
                    "config_hash": config_hash,
                    "events_sent": round(eps * keepalive),
                    "allowed_actions": ["block-ip", "unblock-ip"],
                }
                started = time.monotonic()
                try:
                    status, answer = await client.post(
                        "/api/agent/v1/keepalive",
                        json.dumps(report).encode(),
                        {**headers, "Content-Type": "application/json"},
                    )
                except OSError:
                    status, answer = 0, b""
                if status == 200:
                    config_hash = str(json.loads(answer).get("config_hash", ""))
                    sent += round(eps * keepalive)
                    if started >= steady_from:
                        keepalive_latencies.append(time.monotonic() - started)
                else:
                    keepalive_errors += 1
                await asyncio.sleep(max(0.0, keepalive - (time.monotonic() - started)))

        loops = [agent_loop(i, h) for i, h in enumerate(agents)]
        if keepalive:
            loops += [keepalive_loop(i, h) for i, h in enumerate(agents)]
        await asyncio.gather(*loops)
        elapsed = seconds
    finally:
        for client in clients:
            await client.close()
    return {
        "stored": stored,
        "acknowledged": acknowledged,
        "errors": errors,
        "keepalive_errors": keepalive_errors,
        "latencies": latencies,
        "keepalive_latencies": keepalive_latencies,
        "inventories": inventories,
        "elapsed": elapsed,
        "cpu_seconds": time.process_time() - cpu_started,
    }


def _worker(
    args: tuple[
        str, str, list[dict[str, str]], float, float, float, float, float, dict[str, object], str
    ],
    out: multiprocessing.Queue[dict[str, object]],
) -> None:
    out.put(asyncio.run(run_agents(*args)))


def _tree(process: psutil.Process) -> list[psutil.Process]:
    """The server and its children (the live detection process runs as one)."""
    return [process, *process.children(recursive=True)]


def _tree_rss_mb(process: psutil.Process) -> float:
    return float(sum(p.memory_info().rss for p in _tree(process))) / 2**20


def _tree_cpu(process: psutil.Process) -> float:
    total = 0.0
    for member in _tree(process):
        try:
            total += sum(member.cpu_times()[:2])
        except psutil.Error:
            continue
    return total


def watch_rss(
    pid: int, stop: multiprocessing.synchronize.Event, out: multiprocessing.Queue[float]
) -> None:
    process = psutil.Process(pid)
    peak = 0.0
    while not stop.is_set():
        try:
            peak = max(peak, _tree_rss_mb(process))
        except psutil.Error:
            break
        time.sleep(0.5)
    out.put(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=10.0, help="events per second per agent")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--interval", type=float, default=5.0, help="seconds between an agent's batches"
    )
    parser.add_argument(
        "--keepalive", type=float, default=30.0, help="seconds between keep-alives (0: none)"
    )
    parser.add_argument(
        "--inventory-every",
        type=float,
        default=3600.0,
        help="seconds between an agent's inventory snapshots (0: none)",
    )
    parser.add_argument("--senders", type=int, default=2, help="load-generating processes")
    parser.add_argument(
        "--mix",
        choices=sorted(MIXES),
        default="fleet",
        help="what the agents log: 'fleet' (everyday server logs, few rule matches) or "
        "'attack' (every line a failed SSH login from 250 addresses all agents share)",
    )
    options = parser.parse_args()
    if min(options.agents, options.eps, options.seconds, options.interval, options.senders) <= 0:
        parser.error("--agents, --eps, --seconds, --interval and --senders must be positive")
    if options.keepalive < 0 or options.inventory_every < 0:
        parser.error("--keepalive and --inventory-every must not be negative")
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="puffin-bench-") as tmp:
        data_dir = Path(tmp)
        port = free_port()
        key = admin_key(data_dir)
        server = start_server(data_dir, port)
        try:
            base = f"https://127.0.0.1:{port}"
            cafile = str(data_dir / "tls" / "server.crt")
            verify = ssl.create_default_context(cafile=cafile)
            print(f"server up on {base}; enrolling {options.agents} agents", flush=True)
            agents = enrol_agents(base, verify, key, options.agents)
            result: dict[str, object] = {**_drive(options, base, cafile, agents, server.pid)}
            result.update(detection_catch_up(data_dir))
        finally:
            stopped = _stop(server)
    result["server_stopped_within_30_s"] = stopped
    result["load_before"] = [round(value, 2) for value in load_before]
    result["load_after"] = [round(value, 2) for value in os.getloadavg()]
    print(
        f"agents={options.agents} offered={options.agents * options.eps:.0f} ev/s "
        f"stored={result['events_per_second']:.0f} ev/s p50={result['p50_latency_s']:.3f}s "
        f"p99={result['p99_latency_s']:.3f}s keep-alives={result['keepalives']} "
        f"(p50={result['keepalive_p50_s']:.3f}s p99={result['keepalive_p99_s']:.3f}s) "
        f"inventories={result['inventories']} server_rss={result['server_rss_mb']:.0f} MB "
        f"server CPU {result['server_cpu_ms_per_1000_events']} ms per 1,000 events "
        f"(HTTP process {result['server_main_process_cpu_ms_per_1000_events']} ms; "
        f"load generator {result['load_generator_cpu_ms_per_1000_events']} ms) "
        f"batch errors={result['errors']} keep-alive errors={result['keepalive_errors']}"
    )
    print(
        f"detection: {result['detection_backlog_events']} events behind when the agents "
        f"stopped, caught up in {result['detection_caught_up_s']} s; {result['alerts']} alerts"
    )
    print(f"load average before {result['load_before']}, after {result['load_after']}")
    print(json.dumps(result))


def _drive(
    options: argparse.Namespace, base: str, cafile: str, agents: list[dict[str, str]], pid: int
) -> dict[str, object]:
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[dict[str, object]] = context.Queue()
    rss: multiprocessing.Queue[float] = context.Queue()
    stop = context.Event()
    watcher = context.Process(target=watch_rss, args=(pid, stop, rss))
    watcher.start()
    shares = [agents[i :: options.senders] for i in range(options.senders)]
    inventory = inventory_event() if options.inventory_every else {}
    timing = (options.eps, options.seconds, options.interval, options.keepalive)
    senders = [
        context.Process(
            target=_worker,
            args=(
                (base, cafile, share, *timing, options.inventory_every, inventory, options.mix),
                results,
            ),
        )
        for share in shares
    ]
    server = psutil.Process(pid)
    cpu_before, main_before = _tree_cpu(server), sum(server.cpu_times()[:2])
    for process in senders:
        process.start()
    # A sender that died never answers: give up instead of waiting for ever.
    deadline = options.seconds + options.interval + max(options.keepalive, 0) + 300
    outcomes = [results.get(timeout=deadline) for _ in senders]
    cpu_seconds = _tree_cpu(server) - cpu_before
    main_seconds = sum(server.cpu_times()[:2]) - main_before
    for process in senders:
        process.join()
    stop.set()
    peak = rss.get()
    watcher.join()
    latencies = sorted(x for o in outcomes for x in o["latencies"])  # type: ignore[attr-defined]
    keepalives = sorted(x for o in outcomes for x in o["keepalive_latencies"])  # type: ignore[attr-defined]
    stored = sum(int(o["stored"]) for o in outcomes)  # type: ignore[call-overload]
    acknowledged = sum(int(o["acknowledged"]) for o in outcomes)  # type: ignore[call-overload]
    elapsed = max(float(o["elapsed"]) for o in outcomes)  # type: ignore[arg-type]
    return {
        "agents": options.agents,
        "mix": options.mix,
        "offered_events_per_second": options.agents * options.eps,
        "events_per_second": round(stored / elapsed, 1),
        "p50_latency_s": round(statistics.median(latencies), 4) if latencies else 0.0,
        "p99_latency_s": _p99(latencies),
        "keepalive_seconds": options.keepalive,
        "keepalives": len(keepalives),
        "keepalive_p50_s": round(statistics.median(keepalives), 4) if keepalives else 0.0,
        "keepalive_p99_s": _p99(keepalives),
        "inventories": sum(int(o["inventories"]) for o in outcomes),  # type: ignore[call-overload]
        "server_rss_mb": round(peak, 1),
        # CPU the server spent per 1,000 events over the whole run (warm-up included):
        # unlike events/s, this hardly depends on what else loads the machine.
        "server_cpu_seconds": round(cpu_seconds, 1),
        "server_cpu_ms_per_1000_events": round(1e6 * cpu_seconds / max(1, acknowledged), 1),
        # Of which the HTTP server's own process (the rest: the live detection process).
        "server_main_process_cpu_ms_per_1000_events": round(
            1e6 * main_seconds / max(1, acknowledged), 1
        ),
        # The simulated agents share the machine: what they spend, the server cannot.
        "load_generator_cpu_ms_per_1000_events": round(
            1e6 * sum(cast(float, o["cpu_seconds"]) for o in outcomes) / max(1, acknowledged),
            1,
        ),
        "errors": sum(int(o["errors"]) for o in outcomes),  # type: ignore[call-overload]
        "keepalive_errors": sum(int(o["keepalive_errors"]) for o in outcomes),  # type: ignore[call-overload]
    }


def detection_catch_up(data_dir: Path, limit: float = 120.0) -> dict[str, object]:
    """How far live detection was behind when the agents stopped, and how long it took
    to read the rest (read from the server's own databases, which this run owns)."""

    def backlog() -> int:
        with sqlite3.connect(f"file:{data_dir / 'events.db'}?mode=ro", uri=True) as events:
            newest = events.execute("SELECT COALESCE(MAX(id), 0) FROM event").fetchone()[0]
        with sqlite3.connect(f"file:{data_dir / 'puffin.db'}?mode=ro", uri=True) as state:
            row = state.execute(
                "SELECT position FROM detection_cursor WHERE name = 'live'"
            ).fetchone()
        return int(newest) - int(row[0] if row else 0)

    started = time.monotonic()
    behind = left = backlog()
    while left > 0 and time.monotonic() - started < limit:
        time.sleep(0.1)
        left = backlog()
    with sqlite3.connect(f"file:{data_dir / 'puffin.db'}?mode=ro", uri=True) as state:
        alerts = state.execute("SELECT COUNT(*) FROM alert").fetchone()[0]
    return {
        "detection_backlog_events": behind,
        "detection_caught_up_s": round(time.monotonic() - started, 2) if left <= 0 else None,
        "alerts": int(alerts),
    }


def _stop(server: subprocess.Popen[str]) -> bool:
    """Stop the server (SIGTERM, then SIGKILL after 30 s); return whether it stopped itself."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
        return True
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=30)
        return False


def _p99(values: list[float]) -> float:
    return round(values[max(0, int(len(values) * 0.99) - 1)], 4) if values else 0.0


if __name__ == "__main__":
    main()
