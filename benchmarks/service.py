"""The HTTP service under 200 streaming clients, against ``send_message`` called directly.

Service: ``chatruntime serve`` in its own process (uvicorn on a loopback port, the offline
model, a file store), and 200 clients (``httpx``, one connection each) in this process; each
creates a session, then streams its turns one after another
(``POST /sessions/{id}/messages:stream``), all clients at once. A turn's latency runs from
the request to its ``done`` event. Direct: one ``SessionManager`` on a file store of the same
kind, with the same offline model, 200 sessions each sending the same turns with
``send_message`` at once. The ratio column is the service's figure over the direct one: what
HTTP, JSON, SSE and the server process add.

Run alone: ``python -m benchmarks service``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import anyio
import httpx

from chatruntime import (
    STREAM_EVENT_ADAPTER,
    AgentManager,
    Done,
    OfflineModelProvider,
    SessionManager,
)
from chatruntime.service import hash_key

from ._bench import Bench, median_ms, ms, percentile, progress
from ._model import RUN_CONFIG
from ._report import Row, Section, Target

NAME = "service"
KEY = "bench-service-key"
START_SECONDS = 60.0
STOP_SECONDS = 30.0
FAILURES_TARGET = Target("at_most", 0)


@dataclass
class Load:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def describe_failures(self) -> str:
        return ", ".join(f"{count} {what}" for what, count in self.failures.most_common())


async def _direct(bench: Bench) -> Load:
    sizes = bench.sizes
    store = bench.open_store("file", f"{NAME}-direct")
    agents = AgentManager(store, model_provider=OfflineModelProvider())
    manager = SessionManager(store, agents, run_config=RUN_CONFIG)
    load = Load()
    try:
        (await manager.initialize()).unwrap()
        agent = (await agents.create_agent("Assistant", "Be brief.")).unwrap()
        ids = [
            (await manager.create_session(agent.id, f"Client {n}")).unwrap().id
            for n in range(sizes.service_clients)
        ]

        async def client(n: int, session_id: str) -> None:
            for turn in range(sizes.service_turns):
                started = time.perf_counter()
                result = await manager.send_message(session_id, f"client {n} turn {turn}")
                if result.success:
                    load.latencies.append(time.perf_counter() - started)
                else:
                    assert result.error is not None
                    load.failures[result.error.code] += 1

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for n, session_id in enumerate(ids):
                group.start_soon(client, n, session_id)
        load.seconds = time.perf_counter() - started
    finally:
        await manager.close()
    return load


def _start_service(bench: Bench) -> tuple[subprocess.Popen[str], str]:
    folder = bench.scratch / NAME
    folder.mkdir(parents=True, exist_ok=True)
    keys = folder / "keys.txt"
    keys.write_text(f"bench:{hash_key(KEY)}\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENAI_")}
    command = [
        sys.executable, "-m", "chatruntime", "serve",
        "--store", f"file://{folder / 'files'}", "--port", "0", "--offline",
        "--keys", str(keys), "--log-level", "warning", "--grace", "5",
    ]  # fmt: skip
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    first = server.stdout.readline()  # "chatruntime service on http://127.0.0.1:PORT/"
    if not first.startswith("chatruntime service on "):
        _stop(server)
        raise RuntimeError(f"the service did not start: {first.strip()} {_stderr(server)}")
    return server, first.removeprefix("chatruntime service on ").strip().rstrip("/")


def _stderr(server: subprocess.Popen[str]) -> str:
    return server.stderr.read()[-2000:] if server.stderr is not None else ""


def _stop(server: subprocess.Popen[str]) -> None:
    server.terminate()
    try:
        server.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(STOP_SECONDS)


async def _through_service(bench: Bench, url: str) -> Load:
    sizes = bench.sizes
    clients = sizes.service_clients
    limits = httpx.Limits(
        max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=1
    )
    load = Load()
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as http:
        # The server listens before it prints its address: connections wait in its backlog.
        with anyio.fail_after(START_SECONDS):
            (await http.get("/readyz")).raise_for_status()
        ids: list[str] = [""] * clients

        async def create(n: int) -> None:
            response = await http.post("/sessions", json={"name": f"Client {n}"})
            response.raise_for_status()
            ids[n] = response.json()["id"]

        async with anyio.create_task_group() as group:
            for n in range(clients):
                group.start_soon(create, n)

        async def turn(n: int, number: int) -> None:
            started = time.perf_counter()
            last = None
            async with http.stream(
                "POST",
                f"/sessions/{ids[n]}/messages:stream",
                json={"content": f"client {n} turn {number}"},
            ) as response:
                if response.status_code != 200:
                    load.failures[f"HTTP {response.status_code}"] += 1
                    return
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        last = STREAM_EVENT_ADAPTER.validate_json(line.removeprefix("data: "))
            if isinstance(last, Done):
                load.latencies.append(time.perf_counter() - started)
            else:
                load.failures[type(last).__name__] += 1

        async def client(n: int) -> None:
            for number in range(sizes.service_turns):
                await turn(n, number)

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for n in range(clients):
                group.start_soon(client, n)
        load.seconds = time.perf_counter() - started
    return load


async def _service(bench: Bench) -> Load:
    server, url = await anyio.to_thread.run_sync(_start_service, bench)
    try:
        return await _through_service(bench, url)
    finally:
        await anyio.to_thread.run_sync(_stop, server)


async def run(bench: Bench) -> list[Section]:
    sizes = bench.sizes
    clients, turns = sizes.service_clients, sizes.service_turns
    section = Section(
        f"6. HTTP service: {clients} streaming clients x {turns} turns",
        "ours: chatruntime serve (uvicorn, its own process) on a file store, offline model, "
        f"{clients} httpx clients in the benchmark's process streaming their turns over SSE "
        "at once, a turn timed from request to its done event; direct: SessionManager."
        f"send_message on a file store, same model, {clients} sessions at once; ratio: "
        "service / direct",
        versus="direct",
    )
    progress(f"{NAME}: direct send_message")
    direct = await _direct(bench)
    progress(f"{NAME}: {clients} clients over HTTP")
    served = await _service(bench)
    for load, who in ((served, "service"), (direct, "direct")):
        if not load.latencies:
            section.errors.append(f"{who}: no turn completed ({load.describe_failures()})")
    if section.errors:
        return [section]
    section.add(Row("throughput", served.rate, direct.rate, unit="turns/s"))
    section.add(
        Row(
            "p99 turn",
            ms(percentile(served.latencies, 0.99)),
            ms(percentile(direct.latencies, 0.99)),
        )
    )
    section.add(Row("median turn", median_ms(served.latencies), median_ms(direct.latencies)))
    section.add(
        Row(
            "failed turns",
            sum(served.failures.values()),
            sum(direct.failures.values()),
            unit="turns",
            target=FAILURES_TARGET,
            note="; ".join(
                f"{who}: {load.describe_failures()}"
                for who, load in (("service", served), ("direct", direct))
                if load.failures
            ),
        )
    )
    return [section]
