"""Opening what the REPL needs: models, store, managers, the default agent and a session."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from agents import RunConfig
from agents.models.interface import ModelProvider

from ..agent import AgentManager, ModelConfig, OfflineModelProvider, build_model_provider
from ..session import SessionManager
from ..stores import CorruptRecord, FileStore, SessionStore
from ._chat import Chat
from ._options import Options
from ._render import error_line, session_summary
from ._tools import repl_tools


class StartupError(Exception):
    """The REPL cannot start; the message says why, for the person who started it."""


@dataclass
class Startup:
    """A ready chat and what the banner tells about it.

    Attributes:
        chat: The chat, in the session to resume.
        model: The models in use, in words (``"offline model (no OPENAI_API_KEY set)"``).
        store: Where sessions are kept, in words (a URL never shows its password).
        session: The session in use, in words (``"session 1: Chat 1 (active, 0 messages)"``).
        corrupt: Sessions the store could not read.
    """

    chat: Chat
    model: str
    store: str
    session: str
    corrupt: list[CorruptRecord] = field(default_factory=list)
    _provider: ModelProvider | None = None

    async def close(self) -> None:
        """Close the manager (a file store folds its journals) and the model client."""
        try:
            await self.chat.manager.close()
        finally:
            await _close_provider(self._provider)


def model_config(options: Options) -> ModelConfig:
    """The model configuration: the environment, overridden by the options given.

    Raises:
        StartupError: An environment variable holds a value that means nothing.
    """
    overrides: dict[str, Any] = {}
    if options.model is not None:
        overrides["default_model"] = options.model
    if options.base_url is not None:
        overrides["base_url"] = options.base_url
    if options.offline:
        overrides["offline"] = True
    try:
        return ModelConfig.from_env(**overrides)
    except ValueError as error:
        raise StartupError(str(error)) from None


def open_store(options: Options) -> tuple[SessionStore, str]:
    """The store the options name, and how the banner describes it."""
    if options.store is None:
        return FileStore(options.data), f"files in {options.data}"
    # Imported on use: store URLs may need optional extras (sql, redis) a file-store user
    # never installs.
    stores_by_url = import_module("chatruntime.stores._url")
    try:
        store: SessionStore = stores_by_url.open_store(options.store)
    except (ValueError, ImportError) as error:
        raise StartupError(f"cannot open store {_safe_url(options.store)}: {error}") from None
    return store, _safe_url(options.store)


async def open_chat(options: Options, out: TextIO) -> Startup:
    """Open the store and the managers, and find or create the agent and session to use.

    Raises:
        StartupError: The configuration is wrong or the store cannot be opened.
    """
    config = model_config(options)
    store, store_description = open_store(options)
    provider: ModelProvider
    if config.is_offline and options.offline_delay:
        provider = OfflineModelProvider(delay=options.offline_delay)
    else:
        provider = build_model_provider(config)
    agents = AgentManager(
        store, tools=repl_tools(), model_provider=provider, default_model=config.default_model
    )
    # The manager would read tracing from the environment alone; the options may have sent
    # the models elsewhere (--offline, --base-url), where traces must not go to OpenAI.
    run_config = RunConfig(tracing_disabled=config.tracing_disabled)
    manager = SessionManager(store, agents, run_config=run_config)
    try:
        report = await manager.initialize()
        if not report.success or report.data is None:
            raise StartupError(f"cannot open {store_description}: {error_line(report.error)}")
        started = await Chat.start(manager, agents, out=out, user_id=options.user)
        if not started.success or started.data is None:
            raise StartupError(error_line(started.error))
        chat = started.data
        current = await chat.current()
        if not current.success or current.data is None:
            raise StartupError(error_line(current.error))
        session = session_summary(await chat.number_of(chat.session_id), current.data)
    except BaseException:
        try:
            await manager.close()
        finally:
            await _close_provider(provider)
        raise
    return Startup(
        chat=chat,
        model=config.describe(),
        store=store_description,
        session=session,
        corrupt=list(report.data.corrupt),
        _provider=provider,
    )


async def _close_provider(provider: ModelProvider | None) -> None:
    close = getattr(provider, "aclose", None)
    if close is not None:
        await close()


def _safe_url(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
