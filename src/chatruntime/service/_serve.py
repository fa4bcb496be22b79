"""``chatruntime serve``: the HTTP service on a store, until SIGINT or SIGTERM.

Shutting down stops taking connections, waits up to ``--grace`` seconds for the turns in
flight (then cancels them: a cancelled turn stores nothing), and closes the manager, which
closes the store.
"""

from __future__ import annotations

import math
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TextIO

import anyio
import uvicorn
from agents import RunConfig

from ..agent import AgentManager
from ..cli._chat import ensure_default_agent
from ..cli._options import Options, ServeOptions
from ..cli._render import error_line
from ..cli._startup import Prepared, StartupError, prepare
from ..cli._tools import repl_tools
from ..session import SessionManager
from ._app import create_app
from ._auth import KEYS_ENV, ApiKey, KeyFileError, KeyRing, hash_key, new_key
from ._logging import configure_logging, logger

EXIT_OK = 0
EXIT_FAILED = 1
LOCAL_USER = "local"
"""The user of the one-time admin key made when no keys are configured."""


def serve(options: ServeOptions, *, out: TextIO | None = None) -> int:
    """Run the service until it is told to stop; return the exit status.

    Args:
        options: The parsed command line.
        out: Where the banner (address, and a one-time key) goes (``sys.stdout``).

    Returns:
        0 after a shutdown, 1 when it cannot start (the reason is printed).
    """
    out = out if out is not None else sys.stdout
    if options.new_key is not None:
        return _print_new_key(options.new_key, out)
    try:
        keys, keys_description = _key_ring(options)
        prepared = prepare(
            Options(
                data=options.data,
                store=options.store,
                model=options.model,
                base_url=options.base_url,
                offline=options.offline,
                offline_delay=options.offline_delay,
            )
        )
    except (KeyFileError, StartupError) as error:
        print(f"chatruntime serve: {error}", file=sys.stderr)
        return EXIT_FAILED
    configure_logging(options.log_level, json_lines=options.log_format == "json")
    return anyio.run(_serve, options, prepared, keys, keys_description, out)


def _print_new_key(user_id: str, out: TextIO) -> int:
    key = new_key()
    try:
        KeyRing([ApiKey(user_id, hash_key(key))])
    except KeyFileError as error:
        print(f"chatruntime serve: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"key:  {key}", file=out)
    print(f"line: {user_id}:{hash_key(key)}", file=out)
    print(
        "Give the key to its user; add the line to the key file (end it with :admin for", file=out
    )
    print("a key that may manage agents). The key itself is not kept anywhere.", file=out)
    return EXIT_OK


@contextmanager
def _signals_end_the_serve() -> Iterator[None]:
    """Let the SIGINT or SIGTERM that stopped uvicorn end only the serve, not the process.

    uvicorn handles these signals while it serves, then raises the one it caught again with
    the handlers it found in place: with these, the process goes on to close the store and
    the model client, and exits 0.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stopped(sig: int, frame: FrameType | None) -> None:
    """The signal uvicorn raises again after its graceful shutdown: nothing more to do."""


def listen(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host`` and ``port`` (0: any free port).

    Bound here rather than by uvicorn so that the banner can name the port it got. The
    socket names ``IPPROTO_TCP``: asyncio sets ``TCP_NODELAY`` only on connections of such
    sockets, and without it each answer written in two parts waits for a delayed ACK (40 ms
    on Linux). ``socket.create_server`` and uvicorn's own ``bind_socket`` leave it out.

    Raises:
        OSError: The address cannot be resolved, is in use, or is not allowed.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(backlog)
    except OSError:
        listener.close()
        raise
    return listener


def _key_ring(options: ServeOptions) -> tuple[KeyRing, str]:
    """The configured keys and where they came from; when none are configured, a one-time
    admin key, shown in the description (which the banner prints)."""
    if options.keys is not None:
        keys = KeyRing.from_file(options.keys)
        return keys, f"{len(keys)} from {options.keys}"
    from_env = KeyRing.from_env()
    if from_env is not None:
        return from_env, f"{len(from_env)} from ${KEYS_ENV}"
    key = new_key()
    ring = KeyRing([ApiKey(LOCAL_USER, hash_key(key), admin=True)])
    return ring, f"none configured; the admin key of user {LOCAL_USER!r} for this run: {key}"


async def _serve(
    options: ServeOptions,
    prepared: Prepared,
    keys: KeyRing,
    keys_description: str,
    out: TextIO,
) -> int:
    config = prepared.config
    agents = AgentManager(
        prepared.store,
        tools=repl_tools(),
        model_provider=prepared.provider,
        default_model=config.default_model,
    )
    manager = SessionManager(
        prepared.store,
        agents,
        run_config=RunConfig(tracing_disabled=config.tracing_disabled),
        default_timeout=options.turn_timeout,
    )
    try:
        opened = await manager.initialize()
        if not opened.success:
            print(
                f"chatruntime serve: cannot open {prepared.store_description}: "
                f"{error_line(opened.error)}",
                file=sys.stderr,
            )
            return EXIT_FAILED
        agent = await ensure_default_agent(agents)
        if not agent.success:
            print(f"chatruntime serve: {error_line(agent.error)}", file=sys.stderr)
            return EXIT_FAILED
        app = create_app(
            manager,
            agents,
            keys=keys,
            default_agent_id=agent.data.id,
            cors_origins=options.cors_origins,
        )
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=options.host,
                port=options.port,
                log_config=None,
                access_log=False,
                lifespan="on",
                # uvicorn takes whole seconds.
                timeout_graceful_shutdown=math.ceil(options.grace),
            )
        )
        try:
            listener = listen(options.host, options.port)
        except OSError as error:
            print(
                f"chatruntime serve: cannot listen on {options.host} port {options.port}: "
                f"{error.strerror or error}",
                file=sys.stderr,
            )
            return EXIT_FAILED
        host, port = listener.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"chatruntime service on http://{shown}:{port}/", file=out)
        print(f"  store: {prepared.store_description}", file=out)
        print(f"  model: {config.describe()}", file=out)
        print(f"  keys:  {keys_description}", file=out)
        out.flush()
        with _signals_end_the_serve():
            try:
                await server.serve(sockets=[listener])
            except SystemExit:
                return EXIT_FAILED
        return EXIT_OK
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await manager.close()  # already closed by the app's shutdown, unless it failed
            except Exception:
                logger.exception("closing the store failed")
            close = getattr(prepared.provider, "aclose", None)
            if close is not None:
                await close()
