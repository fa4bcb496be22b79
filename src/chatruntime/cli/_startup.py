"""Opening what the REPL needs: models, store, managers, the default agent and a session.

In two steps: :func:`prepare` builds objects synchronously (it may import store drivers and
build HTTP clients, which reads files) before the event loop runs; :func:`open_chat` then
opens them on the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio
from agents import RunConfig
from agents.models.interface import ModelProvider

from ..agent import AgentManager, ModelConfig, OfflineModelProvider, build_model_provider
from ..models import ChatRuntimeError
from ..session import SessionManager
from ..stores import CorruptRecord, FileStore, SessionStore, open_store
from ._chat import Chat
from ._options import Options
from ._render import error_line, session_summary
from ._tools import repl_tools


class StartupError(Exception):
    """The REPL cannot start; the message says why, for the person who started it."""


@dataclass(frozen=True)
class Prepared:
    """What the options asked for, built but not opened.

    Attributes:
        config: Where the models come from.
        provider: The model provider built from :attr:`config`.
        store: The store, not initialized yet.
        store_description: Where sessions are kept, in words (a URL never shows its password).
        user_id: The user sessions belong to, if any.
    """

    config: ModelConfig
    provider: ModelProvider
    store: SessionStore
    store_description: str
    user_id: str | None = None


@dataclass
class Startup:
    """A ready chat and what the banner tells about it.

    Attributes:
        chat: The chat, in the session to resume.
        model: The models in use, in words (``"offline model (no OPENAI_API_KEY set)"``).
        store: Where sessions are kept, in words.
        session: The session in use, in words (``"session 1: Chat 1 (active, 0 messages)"``).
        corrupt: Sessions passed over because they could not be read (only those met while
            starting: the store is not scanned; ``/check`` does that).
    """

    chat: Chat
    model: str
    store: str
    session: str
    corrupt: list[CorruptRecord] = field(default_factory=list)
    provider: ModelProvider | None = None

    async def close(self) -> None:
        """Close the manager (a file store folds its journals) and the model client."""
        try:
            await self.chat.manager.close()
        finally:
            await _close_provider(self.provider)


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


def prepare(options: Options) -> Prepared:
    """Build the model provider and the store the options name. Blocking: call it before
    the event loop runs.

    Raises:
        StartupError: The configuration or the store URL is wrong, or the store needs an
            extra that is not installed.
    """
    config = model_config(options)
    if options.store is None:
        store: SessionStore = FileStore(options.data)
        description = f"files in {options.data}"
    else:
        description = _safe_url(options.store)
        try:
            store = open_store(options.store)
        except (ChatRuntimeError, ImportError, ValueError) as error:
            raise StartupError(f"cannot open store {description}: {error}") from None
    provider: ModelProvider
    if config.is_offline and options.offline_delay:
        provider = OfflineModelProvider(delay=options.offline_delay)
    else:
        provider = build_model_provider(config)
    return Prepared(config, provider, store, description, options.user)


async def open_chat(prepared: Prepared, out: TextIO) -> Startup:
    """Open the store and the managers, and find or create the agent and session to use.

    On failure everything opened is closed again.

    Raises:
        StartupError: The store cannot be opened or read.
    """
    config = prepared.config
    agents = AgentManager(
        prepared.store,
        tools=repl_tools(),
        model_provider=prepared.provider,
        default_model=config.default_model,
    )
    # The manager would read tracing from the environment alone; the options may have sent
    # the models elsewhere (--offline, --base-url), where traces must not go to OpenAI.
    run_config = RunConfig(tracing_disabled=config.tracing_disabled)
    manager = SessionManager(prepared.store, agents, run_config=run_config)
    try:
        # Opening reads no session: starting costs the same at ten sessions or a million.
        # Damaged sessions show up when used (those met while resuming are in the banner)
        # and through /check.
        opened = await manager.initialize()
        if not opened.success:
            raise StartupError(
                f"cannot open {prepared.store_description}: {error_line(opened.error)}"
            )
        started = await Chat.start(manager, agents, out=out, user_id=prepared.user_id)
        if not started.success or started.data is None:
            raise StartupError(error_line(started.error))
        chat = started.data
        current = await chat.current()
        if not current.success or current.data is None:
            raise StartupError(error_line(current.error))
        session = session_summary(chat.number_of(chat.session_id), current.data)
    except BaseException:
        # Also when Ctrl-C cancelled the start: what was opened must still close.
        with anyio.CancelScope(shield=True):
            try:
                await manager.close()
            finally:
                await _close_provider(prepared.provider)
        raise
    return Startup(
        chat=chat,
        model=config.describe(),
        store=prepared.store_description,
        session=session,
        corrupt=manager.corrupt_sessions,
        provider=prepared.provider,
    )


async def _close_provider(provider: ModelProvider | None) -> None:
    close = getattr(provider, "aclose", None)
    if close is not None:
        await close()


def _safe_url(url: str) -> str:
    """``url`` with its password replaced by ``***``; never raises.

    Split by hand, as ``urlsplit`` splits (the user info ends at the last ``@`` before the
    path, the password starts after its first ``:``), but without parsing the port or the
    host, which ``urlsplit`` rejects with ``ValueError`` when they are malformed: a URL bad
    enough to fail to open must still be shown, and shown without its password.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, host = netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if not at or not colon:
        return url
    return f"{scheme}://{user}:***@{host}{tail}"
