"""Ingest benchmark: many simulated agents send event batches to a live server on loopback.

Starts `puffin server run` (HTTPS, embedded SQLite) in a temporary data directory,
enrols N agents through the real gateway, then each agent sends gzip batches of its
events every interval for the given time. Prints the sustained stored events per second,
the p50/p99 latency from sending a batch to its acknowledgement (which comes only after
the batch is committed), and the server's peak RSS. The last line is one JSON object.

    python bench/ingest.py --agents 1000 --eps 10 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import multiprocessing
import os
import random
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def _events(agent: int, start: int, count: int) -> bytes:
    now = time.time()
    events = [
        {
            "full_log": f"Nov 22 10:00:00 host{agent} sshd[{1000 + i}]: Failed password for "
            f"invalid user u{start + i} from 198.51.100.{i % 250} port 4{i % 1000:03d} ssh2",
            "module": "logcollector",
            "location": "/var/log/auth.log",
            "sent_at": now,
        }
        for i in range(count)
    ]
    return gzip.compress(json.dumps({"events": events}).encode(), compresslevel=5)


async def run_agents(
    base: str,
    cafile: str,
    agents: list[dict[str, str]],
    eps: float,
    seconds: float,
    interval: float,
) -> dict[str, object]:
    verify = ssl.create_default_context(cafile=cafile)
    limits = httpx.Limits(max_connections=len(agents), max_keepalive_connections=len(agents))
    latencies: list[float] = []
    stored = 0
    errors = 0
    per_batch = max(1, round(eps * interval))
    async with httpx.AsyncClient(base_url=base, verify=verify, limits=limits, timeout=30) as client:
        # Agents start spread over one interval; count only the steady state after it.
        steady_from = time.monotonic() + interval
        end = steady_from + seconds

        async def agent_loop(index: int, headers: dict[str, str]) -> None:
            nonlocal stored, errors
            sequence = 0
            await asyncio.sleep(random.uniform(0, interval))
            while time.monotonic() < end:
                sequence += 1
                body = _events(index, sequence * per_batch, per_batch)
                started = time.monotonic()
                try:
                    response = await client.post(
                        "/api/agent/v1/events",
                        content=body,
                        headers={
                            **headers,
                            "Content-Encoding": "gzip",
                            "Content-Type": "application/json",
                            "X-Puffin-Sequence": str(sequence),
                        },
                    )
                    response.raise_for_status()
                    if started >= steady_from:
                        stored += int(response.json()["stored"])
                        latencies.append(time.monotonic() - started)
                except httpx.HTTPError:
                    errors += 1
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

        await asyncio.gather(*(agent_loop(i, h) for i, h in enumerate(agents)))
        elapsed = seconds
    return {"stored": stored, "errors": errors, "latencies": latencies, "elapsed": elapsed}


def _worker(
    args: tuple[str, str, list[dict[str, str]], float, float, float],
    out: multiprocessing.Queue[dict[str, object]],
) -> None:
    out.put(asyncio.run(run_agents(*args)))


def watch_rss(
    pid: int, stop: multiprocessing.synchronize.Event, out: multiprocessing.Queue[float]
) -> None:
    process = psutil.Process(pid)
    peak = 0.0
    while not stop.is_set():
        try:
            peak = max(peak, process.memory_info().rss / 2**20)
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
    parser.add_argument("--senders", type=int, default=2, help="load-generating processes")
    options = parser.parse_args()

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
            result = _drive(options, base, cafile, agents, server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    print(
        f"agents={options.agents} offered={options.agents * options.eps:.0f} ev/s "
        f"stored={result['events_per_second']:.0f} ev/s p50={result['p50_latency_s']:.3f}s "
        f"p99={result['p99_latency_s']:.3f}s server_rss={result['server_rss_mb']:.0f} MB "
        f"errors={result['errors']}"
    )
    print(json.dumps(result))


def _drive(
    options: argparse.Namespace, base: str, cafile: str, agents: list[dict[str, str]], pid: int
) -> dict[str, float | int]:
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[dict[str, object]] = context.Queue()
    rss: multiprocessing.Queue[float] = context.Queue()
    stop = context.Event()
    watcher = context.Process(target=watch_rss, args=(pid, stop, rss))
    watcher.start()
    shares = [agents[i :: options.senders] for i in range(options.senders)]
    senders = [
        context.Process(
            target=_worker,
            args=((base, cafile, share, options.eps, options.seconds, options.interval), results),
        )
        for share in shares
    ]
    for process in senders:
        process.start()
    outcomes = [results.get() for _ in senders]
    for process in senders:
        process.join()
    stop.set()
    peak = rss.get()
    watcher.join()
    latencies = sorted(x for o in outcomes for x in o["latencies"])  # type: ignore[attr-defined]
    stored = sum(int(o["stored"]) for o in outcomes)  # type: ignore[call-overload]
    elapsed = max(float(o["elapsed"]) for o in outcomes)  # type: ignore[arg-type]
    return {
        "agents": options.agents,
        "offered_events_per_second": options.agents * options.eps,
        "events_per_second": round(stored / elapsed, 1),
        "p50_latency_s": round(statistics.median(latencies), 4) if latencies else 0.0,
        "p99_latency_s": round(latencies[int(len(latencies) * 0.99) - 1], 4) if latencies else 0.0,
        "server_rss_mb": round(peak, 1),
        "errors": sum(int(o["errors"]) for o in outcomes),  # type: ignore[call-overload]
    }


if __name__ == "__main__":
    main()
