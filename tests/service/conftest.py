"""The service under test: uvicorn on a free loopback port, talked to over real HTTP.

The server runs in its own thread with its own event loop, as it would in its own process:
the tests are plain HTTP clients (``httpx``) of it. ``Service.call`` runs a coroutine on the
server's loop, where its manager and store live, to look at what was stored.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from agents import Agent

from chatruntime import (
    STREAM_EVENT_ADAPTER,
    AgentManager,
    FileStore,
    OfflineModelProvider,
    SessionManager,
    StreamEvent,
    ToolRegistry,
)
from chatruntime.service import KeyRing, create_app
from chatruntime.stores import SessionStore

T = TypeVar("T")

ALICE_KEY = "alice-secret-key"
BOB_KEY = "bob-secret-key"
ADMIN_KEY = "ops-secret-key"
KEYS = KeyRing.from_keys({ALICE_KEY: "alice", BOB_KEY: "bob"}, admins={ADMIN_KEY: "ops"})
START_SECONDS = 10.0


@dataclass
class Service:
    """A running service and what is behind it."""

    url: str
    store: SessionStore
    agents: AgentManager
    manager: SessionManager
    default_agent_id: str
    loop: asyncio.AbstractEventLoop
    server: uvicorn.Server
    clients: list[httpx.Client] = field(default_factory=list)

    def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` on the server's event loop and return its result."""

        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def register(self, agent: Agent[Any]) -> str:
        """Register a code-defined agent (e.g. with a scripted model) with the service; its id."""

        async def register() -> str:
            return self.agents.register(agent)

        return self.call(register)

    def wait_for(self, condition: Callable[[], bool], seconds: float = 10.0) -> None:
        """Wait until ``condition()`` holds; fail after ``seconds``."""
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, "timed out waiting"
            time.sleep(0.02)

    def client(self, key: str | None = ALICE_KEY, **options: Any) -> httpx.Client:
        """An HTTP client of the service presenting ``key`` (none when ``None``)."""
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30, **options)
        self.clients.append(client)
        return client

    def async_client(self, key: str | None = ALICE_KEY, **options: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60, **options)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of ``/metrics`` (0 when absent)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        for line in text.splitlines():
            sample, _, value = line.rpartition(" ")
            metric_name, _, rest = sample.partition("{")
            found = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric_name == name and found == wanted:
                return float(value)
        return 0.0


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, StreamEvent]]:
    """The (SSE event name, stream event) pairs of a response's lines; comments skipped."""
    name = ""
    data: list[str] = []
    for line in lines:
        if line.startswith(":"):
            continue
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))
        elif line == "" and data:
            yield name, STREAM_EVENT_ADAPTER.validate_json("\n".join(data))
            name, data = "", []


async def asse_events(lines: AsyncIterator[str]) -> list[StreamEvent]:
    """:func:`sse_events` of an async response, events only."""
    collected = [line async for line in lines]
    return [event for _, event in sse_events(collected)]


def error_body(response: httpx.Response) -> dict[str, Any]:
    """The ``ErrorInfo`` a failed call answered."""
    body = json.loads(response.content)
    assert set(body) == {"code", "message", "details"}, body
    return dict(body)


@contextmanager
def running_service(
    tmp_path: Path,
    *,
    store: Callable[[], SessionStore] | None = None,
    offline_delay: float = 0.0,
    tools: ToolRegistry | None = None,
    manager_options: dict[str, Any] | None = None,
    app_options: dict[str, Any] | None = None,
    graceful_seconds: float | None = 10.0,
) -> Iterator[Service]:
    """Serve a fresh manager (a file store under ``tmp_path`` unless ``store`` builds one,
    the offline model, one stored default agent) until the block ends, failing or not."""
    # IPPROTO_TCP named, not implied: asyncio sets TCP_NODELAY only on sockets that name it,
    # and without it every answer waits 40 ms for a delayed ACK.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    host, port = listener.getsockname()
    found: dict[str, Any] = {}

    async def serve() -> None:
        opened = store() if store is not None else FileStore(tmp_path / "store")
        agents = AgentManager(
            opened, tools=tools, model_provider=OfflineModelProvider(delay=offline_delay)
        )
        manager = SessionManager(opened, agents, **(manager_options or {}))
        (await manager.initialize()).unwrap()
        agent = (await agents.create_agent("Assistant", "Be brief.")).unwrap()
        app = create_app(
            manager, agents, keys=KEYS, default_agent_id=agent.id, **(app_options or {})
        )
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=graceful_seconds,
        )
        server = uvicorn.Server(config)
        found["service"] = Service(
            url=f"http://{host}:{port}",
            store=opened,
            agents=agents,
            manager=manager,
            default_agent_id=agent.id,
            loop=asyncio.get_running_loop(),
            server=server,
        )
        await server.serve(sockets=[listener])

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as error:
            found["error"] = error

    thread = threading.Thread(target=main, name="service", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_SECONDS
        while not (found.get("service") and found["service"].server.started):
            if "error" in found or not thread.is_alive():
                raise RuntimeError("the service did not start") from found.get("error")
            if time.monotonic() > deadline:
                raise TimeoutError("the service did not start in time")
            time.sleep(0.01)
        service: Service = found["service"]
        try:
            yield service
        finally:
            for client in service.clients:
                client.close()
    finally:
        if "service" in found:
            found["service"].server.should_exit = True
        thread.join(60)
        listener.close()
        assert not thread.is_alive(), "the service did not stop"
    if "error" in found:
        raise found["error"]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """The service on a file store, with the offline model answering at once."""
    with running_service(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for the tests of a module that only read, or write apart from each other."""
    with running_service(tmp_path_factory.mktemp("shared")) as running:
        yield running


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start a service with options (see :func:`running_service`); stopped after the test."""
    with ExitStack() as stack:

        def start(**options: Any) -> Service:
            return stack.enter_context(running_service(tmp_path, **options))

        yield start


@pytest.fixture
def alice(service: Service) -> httpx.Client:
    return service.client(ALICE_KEY)


@pytest.fixture
def bob(service: Service) -> httpx.Client:
    return service.client(BOB_KEY)


@pytest.fixture
def admin(service: Service) -> httpx.Client:
    return service.client(ADMIN_KEY)
