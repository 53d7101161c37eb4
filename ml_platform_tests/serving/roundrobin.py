"""A lean closed-loop load generator: single-record predictions, round robin over endpoint replicas.

Used by the replicas test and by ``benchmarks/replicas.py``. It speaks HTTP/1.1 over raw
asyncio streams with one keep-alive connection per client and replica, because on a small
shared machine a full HTTP client (httpx) spends as much CPU per request as the servers it
loads, and the figures would measure the client. Each answer is decoded (one ``json.loads``)
for its prediction id and version: the test checks them against the prediction log.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outcome:
    """One request: where it went, when it was sent and answered, and what came back."""

    replica: int
    sent: float
    done: float
    status: int | str  # the HTTP status, or the kind of failure (timeout, dropped connection)
    prediction_id: str | None = None
    version: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.status == 200 and self.prediction_id is not None


@dataclass
class RoundRobin:
    """``clients`` concurrent clients; request ``n`` goes to replica ``n % len(ports)``.

    Stops after ``total`` requests, or when ``until`` (a ``time.perf_counter`` value) passes,
    whichever comes first. Every outcome is kept in ``outcomes``, in completion order.
    """

    ports: list[int]
    path: str
    record: Callable[[int], dict]
    clients: int
    token: str | None = None
    total: int | None = None
    until: float = math.inf
    timeout: float = 60.0
    outcomes: list[Outcome] = field(default_factory=list)
    _next: int = 0

    def _head(self, port: int, length: int) -> bytes:
        auth = f"Authorization: Bearer {self.token}\r\n" if self.token else ""
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        ).encode()

    def _take(self) -> int | None:
        """The next request number, or None when the load is over (one event loop: no lock needed)."""
        if (self.total is not None and self._next >= self.total) or time.perf_counter() >= self.until:
            return None
        n, self._next = self._next, self._next + 1
        return n

    async def run(self) -> list[Outcome]:
        await asyncio.gather(*(self._client() for _ in range(self.clients)))
        return self.outcomes

    async def _client(self) -> None:
        connections: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        try:
            while (n := self._take()) is not None:
                replica = n % len(self.ports)
                self.outcomes.append(await self._request(connections, replica, n))
        finally:
            for _, writer in connections.values():
                writer.close()

    async def _request(self, connections: dict, replica: int, n: int) -> Outcome:
        port = self.ports[replica]
        body = json.dumps(self.record(n), separators=(",", ":")).encode()
        sent = time.perf_counter()
        try:
            if replica not in connections:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                connections[replica] = (reader, writer)
            reader, writer = connections[replica]
            writer.write(self._head(port, len(body)) + body)
            status, answer, close = await asyncio.wait_for(read_response(reader), self.timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            dropped = connections.pop(replica, None)
            if dropped:
                dropped[1].close()
            kind = "timeout" if isinstance(exc, TimeoutError) else f"connection: {type(exc).__name__}"
            return Outcome(replica, sent, time.perf_counter(), kind)
        done = time.perf_counter()
        if close:
            connections.pop(replica)[1].close()
        if status != 200:
            return Outcome(replica, sent, done, status)
        prediction = json.loads(answer)["predictions"][0]
        return Outcome(replica, sent, done, status, prediction["prediction_id"], prediction["version"])


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body (by Content-Length: the endpoint always sends one) and whether the server closes."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    body = b""
    if at >= 0:
        length = int(lower[at + 17 : lower.index(b"\r\n", at + 2)])
        body = await reader.readexactly(length)
    return status, body, b"\r\nconnection: close" in lower


def run(load: RoundRobin) -> list[Outcome]:
    """Run a load to its end on a fresh event loop (uvloop when installed: less client CPU per request)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(load.run())
    return uvloop.run(load.run())


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (nan for none)."""
    if not values:
        return math.nan
    return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]
