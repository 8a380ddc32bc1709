"""A TCP relay on loopback between an agent and the server that can hold either direction.

The agent enrols through the relay, so its TLS session (pinned to the server's
certificate) passes through untouched. Holding the server's answers while a batch is on
its way lets a test kill a process exactly when the server has stored a batch and the
agent has not yet seen the acknowledgement; holding the agent's bytes does the same for a
batch that has left the agent but not reached the server.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class Relay:
    """Forward 127.0.0.1:`port` to 127.0.0.1:`upstream_port`, one pair of sockets a client."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.hold_up = threading.Event()  # set: keep what the agent sends
        self.hold_down = threading.Event()  # set: keep what the server answers
        self.held_bytes = {"up": 0, "down": 0}
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def cut(self) -> None:
        """Drop every connection and whatever is held; let new connections through."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            self.held_bytes = {"up": 0, "down": 0}
        for pair in pairs:
            for side in pair:
                _close(side)
        self.hold_up.clear()
        self.hold_down.clear()

    def close(self) -> None:
        """Stop accepting and drop every connection."""
        _close(self._listener)
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                _close(client)  # the server is down: the agent sees a closed connection
                continue
            upstream.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                self._pairs.append(pair)
            for source, target, name in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(
                    target=self._pump, args=(pair, source, target, name), daemon=True
                ).start()

    def _pump(
        self,
        pair: tuple[socket.socket, socket.socket],
        source: socket.socket,
        target: socket.socket,
        direction: str,
    ) -> None:
        hold = self.hold_up if direction == "up" else self.hold_down
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                break
            if not data:
                break
            if hold.is_set():
                with self._lock:
                    self.held_bytes[direction] += len(data)
                while hold.is_set() and self._alive(pair):
                    time.sleep(0.002)
                if not self._alive(pair):
                    return  # cut while held: the bytes are dropped
            try:
                target.sendall(data)
            except OSError:
                break
        self._drop(pair)

    def _drop(self, pair: tuple[socket.socket, socket.socket]) -> None:
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
        for side in pair:
            _close(side)

    def _alive(self, pair: tuple[socket.socket, socket.socket]) -> bool:
        with self._lock:
            return pair in self._pairs


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
