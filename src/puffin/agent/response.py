"""Active response: the few allow-listed actions the server may ask of an agent.

Actions (the server's spelling `block_ip` is accepted as `block-ip`):

- `block-ip` `{"ip", "timeout"}` (or `timeout_seconds`; default 3600 s, at most 30 days):
  drop traffic from the address. With nftables, an element in a set with timeouts in the
  agent's own table `inet puffin` (created once, atomically, with `nft -f -`), so the
  kernel unblocks by itself; without nft, `iptables`/`ip6tables -I INPUT -s IP -j DROP`.
  On Windows, two Windows Firewall rules named `puffin-block-IP` (inbound and outbound,
  every profile) through `netsh advfirewall firewall add rule`; unblocking deletes the
  rules of that name. Either way the block and its end time are recorded in
  `responses.json` in the state directory, and `expire(now)` lifts the iptables and
  Windows Firewall rules that are due, after a restart too.
  Loopback, unspecified and multicast addresses, and any `protected` address (the server),
  are refused.
- `unblock-ip` `{"ip"}`: lift a block.
- `kill-process` `{"pid", "name"?}`: SIGTERM, then SIGKILL after 5 s. Refuses pid 1 and
  lower, the agent's own pid and its parent; with `name`, refuses a process whose name
  differs (the pid was reused). On Windows it also refuses the System process and the
  processes whose end stops the machine (csrss.exe, wininit.exe, lsass.exe, …).

Anything else, or an action not in `allowed`, is answered `ok=False` with a reason. Which
actions are allowed is set by the agent's local configuration only (`response:
{"allowed_actions": [...]}`), never by the server; the default is `block-ip` alone.
Allowing `block-ip` allows `unblock-ip` for the blocks this agent made; allowing
`unblock-ip` itself lets it lift any matching rule. No shell is ever used; programs run
as argument lists with a timeout through `runner` (`subprocess.run` unless a test
injects a recorder).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import ntpath
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from puffin.protocol.messages import Task, TaskResult

ACTIONS = ("block-ip", "unblock-ip", "kill-process")
DEFAULT_ALLOWED = frozenset({"block-ip"})
STATE_FILE = "responses.json"
DEFAULT_BLOCK_SECONDS = 3600
MAX_BLOCK_SECONDS = 30 * 86400
COMMAND_TIMEOUT = 30
TERMINATE_GRACE = 5.0
TABLE = ("inet", "puffin")
NETSH_RULE_PREFIX = "puffin-block-"
# Ending one of these stops Windows (a bug check) or logs every user off.
WINDOWS_CRITICAL = frozenset(
    {"system", "smss.exe", "csrss.exe", "wininit.exe", "winlogon.exe", "services.exe",
     "lsass.exe", "lsaiso.exe"}
)  # fmt: skip
WINDOWS_SYSTEM_PID = 4
NFT_RULESET = """table inet puffin {
    set blocked4 { type ipv4_addr; flags timeout; }
    set blocked6 { type ipv6_addr; flags timeout; }
    chain input {
        type filter hook input priority -10; policy accept;
        ip saddr @blocked4 drop
        ip6 saddr @blocked6 drop
    }
}
"""

Runner = Callable[..., "subprocess.CompletedProcess[str]"]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The action cannot be done; the message says why."""


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def detect_firewall() -> str:
    """Return "netsh" on Windows, else "nft" or "iptables" if installed (nft first), or ""."""
    if sys.platform == "win32":
        return "netsh"
    for tool in ("nft", "iptables"):
        if shutil.which(tool):
            return tool
    return ""


class Responder:
    """Runs allow-listed response tasks and lifts timed blocks when they are due."""

    def __init__(
        self,
        state_dir: Path,
        *,
        allowed: set[str],
        runner: Runner = subprocess.run,
        firewall: str | None = None,
        protected: Collection[str] = (),
    ) -> None:
        self.state_file = state_dir / STATE_FILE
        self.allowed = {a.replace("_", "-") for a in allowed} & set(ACTIONS)
        self._unblock_any = "unblock-ip" in self.allowed
        if "block-ip" in self.allowed:
            self.allowed.add("unblock-ip")  # for the blocks this agent made
        self.runner = runner
        self.firewall = detect_firewall() if firewall is None else firewall
        self.protected = {ipaddress.ip_address(address) for address in protected}

    def run(self, task: Task) -> TaskResult:
        """Do what the task asks if it is allowed; never raise."""
        action = task.action.replace("_", "-")
        handlers: dict[str, Callable[[Task], dict[str, Any]]] = {
            "block-ip": self._block,
            "unblock-ip": self._unblock,
            "kill-process": self._kill,
        }
        if action not in handlers:
            return _refusal(task, f"unknown action {task.action!r}")
        if action not in self.allowed:
            return _refusal(task, f"action {action!r} is not allowed on this agent")
        try:
            return TaskResult(task_id=task.id, ok=True, result=handlers[action](task))
        except Refused as error:
            return _refusal(task, str(error), action)

    def expire(self, now: float | None = None) -> list[TaskResult]:
        """Lift blocks whose time is up (`now` is Unix time); one result per lifted block."""
        now = time.time() if now is None else now
        state = self._load()
        results = []
        for ip, block in sorted(state["blocks"].items()):
            if float(block["until"]) > now:
                continue
            del state["blocks"][ip]
            task_id = uuid.UUID(block["task_id"])
            result = {
                "action": "unblock-ip",
                "ip": ip,
                "reason": "the block's time is up",
                "blocked_until": _iso(float(block["until"])),
                "unblocked_at": _iso(now),
            }
            try:
                if block["firewall"] == "iptables":
                    self._iptables_unblock(ipaddress.ip_address(ip))
                elif block["firewall"] == "netsh":
                    self._netsh_unblock(ipaddress.ip_address(ip))
            except Refused as error:
                results.append(
                    TaskResult(task_id=task_id, ok=False, result={**result, "error": str(error)})
                )
                continue
            results.append(TaskResult(task_id=task_id, ok=True, result=result))
        if results:
            self._save(state)
        return results

    # block-ip / unblock-ip

    def _block(self, task: Task) -> dict[str, Any]:
        address = self._address(task.parameters, blocking=True)
        seconds = _block_seconds(task.parameters)
        state = self._load()
        ip = str(address)
        if self.firewall == "nft":
            self._nft_block(address, seconds, refresh=ip in state["blocks"])
        elif self.firewall == "iptables":
            self._iptables_block(address)
        elif self.firewall == "netsh":
            self._netsh_block(address)
        else:
            raise Refused("no firewall tool found (nft or iptables)")
        until = time.time() + seconds
        state["blocks"][ip] = {"until": until, "task_id": str(task.id), "firewall": self.firewall}
        self._save(state)
        return {
            "action": "block-ip",
            "ip": ip,
            "timeout": seconds,
            "until": _iso(until),
            "firewall": self.firewall,
        }

    def _unblock(self, task: Task) -> dict[str, Any]:
        address = self._address(task.parameters, blocking=False)
        state = self._load()
        block = state["blocks"].pop(str(address), None)
        if block is None and not self._unblock_any:
            raise Refused(f"{address} was not blocked by this agent")
        firewall = block["firewall"] if block else self.firewall
        if firewall == "nft":
            self._must(["nft", "delete", "element", *TABLE, _nft_set(address), f"{{ {address} }}"])
        elif firewall == "iptables":
            self._iptables_unblock(address)
        elif firewall == "netsh":
            self._netsh_unblock(address)
        else:
            raise Refused("no firewall tool found (nft or iptables)")
        self._save(state)
        return {"action": "unblock-ip", "ip": str(address), "firewall": firewall}

    def _address(self, parameters: Mapping[str, Any], *, blocking: bool) -> Address:
        value = parameters.get("ip")
        if not isinstance(value, str):
            raise Refused("parameter 'ip' must be an IP address")
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError as error:
            raise Refused(f"{value!r} is not an IP address") from error
        if blocking and (address.is_loopback or address.is_unspecified or address.is_multicast):
            raise Refused(f"{address} is a loopback, unspecified or multicast address")
        if blocking and address in self.protected:
            raise Refused(f"{address} is protected on this agent (its server)")
        return address

    def _nft_block(self, address: Address, seconds: int, *, refresh: bool) -> None:
        if self._call(["nft", "list", "table", *TABLE]).returncode != 0:
            self._must(["nft", "-f", "-"], input=NFT_RULESET)
        element = ["nft", "delete", "element", *TABLE, _nft_set(address), f"{{ {address} }}"]
        if refresh:
            self._call(element)  # nft keeps an existing element's old timeout; renew it
        self._must(
            [
                "nft",
                "add",
                "element",
                *TABLE,
                _nft_set(address),
                f"{{ {address} timeout {seconds}s }}",
            ]
        )

    def _iptables_block(self, address: Address) -> None:
        rule = ["INPUT", "-s", str(address), "-j", "DROP"]
        tool = _iptables(address)
        if self._call([tool, "-w", "5", "-C", *rule]).returncode != 0:
            self._must([tool, "-w", "5", "-I", *rule])

    def _iptables_unblock(self, address: Address) -> None:
        rule = ["INPUT", "-s", str(address), "-j", "DROP"]
        tool = _iptables(address)
        removed = 0
        while removed < 16 and self._call([tool, "-w", "5", "-C", *rule]).returncode == 0:
            self._must([tool, "-w", "5", "-D", *rule])
            removed += 1
        if removed == 0:
            raise Refused(f"{address} is not blocked")

    def _netsh_block(self, address: Address) -> None:
        name = f"name={NETSH_RULE_PREFIX}{address}"
        # A renewed block replaces its rules rather than adding a second pair.
        self._call([*_netsh_firewall(), "delete", "rule", name], errors="replace")
        try:
            for direction in ("in", "out"):
                self._must(
                    [
                        *_netsh_firewall(),
                        "add",
                        "rule",
                        name,
                        f"dir={direction}",
                        "action=block",
                        f"remoteip={address}",
                        "profile=any",
                        "enable=yes",
                    ],
                    errors="replace",
                )
        except Refused:
            self._call([*_netsh_firewall(), "delete", "rule", name], errors="replace")
            raise

    def _netsh_unblock(self, address: Address) -> None:
        argv = [*_netsh_firewall(), "delete", "rule", f"name={NETSH_RULE_PREFIX}{address}"]
        completed = self._call(argv, errors="replace")
        if completed.returncode != 0:  # netsh answers 1 when no rule has the name
            detail = (completed.stdout or completed.stderr or "").strip()[:300]
            raise Refused(f"{address} is not blocked (netsh: {detail})")

    # kill-process

    def _kill(self, task: Task) -> dict[str, Any]:
        pid = task.parameters.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool):
            raise Refused("parameter 'pid' must be a process id")
        if pid <= 1 or pid in (os.getpid(), os.getppid()):
            raise Refused(f"refusing to kill pid {pid} (init, the agent or its parent)")
        try:
            process = psutil.Process(pid)
            name = process.name()
            expected = task.parameters.get("name")
            if expected is not None and expected != name:
                raise Refused(f"pid {pid} is {name!r}, not {expected!r}; not killed")
            if sys.platform == "win32" and (
                pid == WINDOWS_SYSTEM_PID or name.lower() in WINDOWS_CRITICAL
            ):
                raise Refused(f"refusing to kill {name} (pid {pid}): Windows needs it")
            signal_name = _terminate(process)
        except psutil.NoSuchProcess as error:
            raise Refused(f"no process with pid {pid}") from error
        except psutil.AccessDenied as error:
            raise Refused(f"not permitted to kill pid {pid}") from error
        except psutil.TimeoutExpired as error:
            raise Refused(f"pid {pid} did not exit even after SIGKILL") from error
        return {"action": "kill-process", "pid": pid, "name": name, "signal": signal_name}

    # programs and state

    def _call(self, argv: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        try:
            return self.runner(
                argv,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
                **options,
            )
        except (OSError, subprocess.SubprocessError) as error:
            raise Refused(f"{argv[0]} could not run: {error}") from error

    def _must(self, argv: list[str], **options: Any) -> None:
        completed = self._call(argv, **options)
        if completed.returncode != 0:
            detail = (completed.stderr or completed.stdout or "").strip()[:300]
            raise Refused(f"{' '.join(argv[:3])} failed ({completed.returncode}): {detail}")

    def _load(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            state = {}
        if not isinstance(state, dict) or not isinstance(state.get("blocks"), dict):
            state = {"blocks": {}}
        return state

    def _save(self, state: dict[str, Any]) -> None:
        """Replace the state file atomically, readable by the agent only."""
        fd, temporary = tempfile.mkstemp(dir=self.state_file.parent, prefix=".responses-")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(state, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.state_file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


def allowed_actions(config: Mapping[str, Any]) -> set[str]:
    """Return the actions the local configuration allows (`response.allowed_actions`).

    Raises ValueError for a name that is not an action, so a typo is not silently ignored.
    """
    section = config.get("response")
    if section is None or (isinstance(section, Mapping) and "allowed_actions" not in section):
        return set(DEFAULT_ALLOWED)
    names = section.get("allowed_actions") if isinstance(section, Mapping) else None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError("response.allowed_actions must be a list of action names")
    wanted = {name.replace("_", "-") for name in names}
    unknown = sorted(wanted - set(ACTIONS))
    if unknown:
        raise ValueError(f"response.allowed_actions: unknown {unknown}; choose from {ACTIONS}")
    return wanted


def _refusal(task: Task, reason: str, action: str | None = None) -> TaskResult:
    return TaskResult(
        task_id=task.id, ok=False, result={"action": action or task.action, "error": reason}
    )


def _block_seconds(parameters: Mapping[str, Any]) -> int:
    value = parameters.get("timeout", parameters.get("timeout_seconds", DEFAULT_BLOCK_SECONDS))
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_BLOCK_SECONDS:
        raise Refused(f"timeout must be a number of seconds from 1 to {MAX_BLOCK_SECONDS}")
    return value


def _nft_set(address: Address) -> str:
    return "blocked4" if address.version == 4 else "blocked6"


def _iptables(address: Address) -> str:
    return "iptables" if address.version == 4 else "ip6tables"


def _netsh_firewall() -> list[str]:
    """Return `netsh advfirewall firewall` by its full path (never looked up in PATH)."""
    root = os.environ.get("SYSTEMROOT") or r"C:\Windows"
    return [ntpath.join(root, "System32", "netsh.exe"), "advfirewall", "firewall"]


def _terminate(process: psutil.Process) -> str:
    """Stop a process politely, then firmly; return the signal that ended it."""
    process.terminate()
    try:
        process.wait(timeout=TERMINATE_GRACE)
    except psutil.TimeoutExpired:
        process.kill()
        process.wait(timeout=TERMINATE_GRACE)
        return "SIGKILL"
    return "SIGTERM"
