"""How the library picks models: OpenAI, any OpenAI-compatible server, or the offline model.

Three cases, decided by :class:`ModelConfig` (usually read from the environment):

- **offline**: no API key and no base URL (or ``CHATRUNTIME_OFFLINE=1``) → the
  :class:`~chatruntime.agent._offline.OfflineModel`, no network at all;
- **an OpenAI-compatible server** (Ollama, vLLM, LM Studio, a test server): ``OPENAI_BASE_URL``
  is set → the SDK's OpenAI models on a client for that URL; local servers rarely check the key,
  so a placeholder is sent when none is set;
- **OpenAI**: ``OPENAI_API_KEY`` is set and no base URL → the SDK's OpenAI models.

The SDK exports traces of every run to OpenAI's servers unless told not to. Only the last case
has a real OpenAI key to export with, so :attr:`ModelConfig.tracing_disabled` is true in the
other two; the code that runs turns passes it on::

    config = ModelConfig.from_env()
    provider = build_model_provider(config)
    run_config = RunConfig(model_provider=provider, tracing_disabled=config.tracing_disabled)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast, get_args

from agents.models import get_default_model
from agents.models.interface import Model, ModelProvider
from agents.models.openai_provider import OpenAIProvider
from openai import AsyncOpenAI

from ._offline import OFFLINE_MODEL_NAME, OfflineModelProvider

# The OpenAI client imports its HTTP transport on first use, and that import reads package
# metadata from disk. Importing it here keeps that file read off the event loop, where
# ``build_model_provider`` is usually called.
with contextlib.suppress(ImportError):
    import httpcore2  # noqa: F401

ModelApi = Literal["responses", "chat_completions"]
"""Which OpenAI HTTP API the models speak."""

PLACEHOLDER_API_KEY = "not-needed"
"""The key sent to an OpenAI-compatible server when none is configured."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Where the models of a chat runtime come from.

    Attributes:
        default_model: The model used by agents that name none. ``None`` means the SDK's own
            default for OpenAI (``OPENAI_DEFAULT_MODEL`` or its built-in choice); a local server
            usually needs a name here (``"llama3.2"``).
        base_url: The ``/v1`` URL of an OpenAI-compatible server, e.g.
            ``"http://127.0.0.1:11434/v1"`` for Ollama. ``None`` means OpenAI itself.
        api_key: The API key. Optional for a server at ``base_url``.
        api: ``"responses"`` (the Responses API, the SDK's default) or ``"chat_completions"``
            (for servers that only speak Chat Completions).
        offline: ``True`` forces the offline model, ``False`` forbids it, ``None`` (the
            default) uses it when there is neither an API key nor a base URL.
        max_retries: How often the OpenAI client retries a failed request (the client's own
            default when ``None``).
        timeout: Seconds before the OpenAI client gives up on a request (the client's own
            default when ``None``).

    Example:
        ```python
        config = ModelConfig(base_url="http://127.0.0.1:11434/v1", default_model="llama3.2")
        config.describe()  # 'llama3.2 via http://127.0.0.1:11434/v1'
        ```
    """

    default_model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    api: ModelApi = "responses"
    offline: bool | None = None
    max_retries: int | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.api not in get_args(ModelApi):
            raise ValueError(f"api must be 'responses' or 'chat_completions', not {self.api!r}")
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError(f"max_retries must be zero or positive, not {self.max_retries!r}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be positive, not {self.timeout!r}")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"the base URL must start with http:// or https://, such as "
                f"'http://127.0.0.1:11434/v1'; got {self.base_url!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ModelConfig:
        """Read the configuration from environment variables.

        ============================  =====================================================
        ``OPENAI_API_KEY``            :attr:`api_key`
        ``OPENAI_BASE_URL``           :attr:`base_url`
        ``CHATRUNTIME_MODEL``         :attr:`default_model`
        ``CHATRUNTIME_API``           :attr:`api` (``responses`` or ``chat_completions``)
        ``CHATRUNTIME_OFFLINE``       :attr:`offline` (``1``/``true``/``yes``/``on`` or
                                      ``0``/``false``/``no``/``off``)
        ============================  =====================================================

        Empty variables count as unset.

        Args:
            environ: The variables to read (``os.environ`` by default).
            **overrides: Fields that take precedence over the environment, e.g.
                ``max_retries=0``.

        Returns:
            The configuration.

        Raises:
            ValueError: A variable holds a value that means nothing here.
        """
        env = os.environ if environ is None else environ

        def read(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        api = read("CHATRUNTIME_API") or "responses"
        if api not in get_args(ModelApi):
            raise ValueError(
                f"CHATRUNTIME_API must be 'responses' or 'chat_completions', not {api!r}"
            )
        offline_flag = read("CHATRUNTIME_OFFLINE")
        offline: bool | None = None
        if offline_flag is not None:
            if offline_flag.lower() in _TRUE:
                offline = True
            elif offline_flag.lower() in _FALSE:
                offline = False
            else:
                raise ValueError(
                    f"CHATRUNTIME_OFFLINE must be 1 or 0 (or true/false), not {offline_flag!r}"
                )
        config = cls(
            default_model=read("CHATRUNTIME_MODEL"),
            base_url=read("OPENAI_BASE_URL"),
            api_key=read("OPENAI_API_KEY"),
            api=cast(ModelApi, api),
            offline=offline,
        )
        return replace(config, **overrides) if overrides else config

    @property
    def is_offline(self) -> bool:
        """Whether the offline model answers (see :attr:`offline`)."""
        if self.offline is not None:
            return self.offline
        return self.api_key is None and self.base_url is None

    @property
    def uses_openai_platform(self) -> bool:
        """Whether requests go to OpenAI itself, with a real API key."""
        return not self.is_offline and self.base_url is None and self.api_key is not None

    @property
    def tracing_disabled(self) -> bool:
        """Whether runs must not export traces: true unless talking to OpenAI with a real key.

        Pass it to ``RunConfig(tracing_disabled=...)``. Without it the SDK would try to send the
        traces of offline, local or test runs to OpenAI's servers.
        """
        return not self.uses_openai_platform

    @property
    def model_name(self) -> str:
        """The name of the model used by agents that name none."""
        if self.default_model is not None:
            return self.default_model
        return OFFLINE_MODEL_NAME if self.is_offline else get_default_model()

    def describe(self) -> str:
        """A one-line, human description of the models, for a banner or a log line.

        Never shows the API key.

        Returns:
            For example ``"offline model (no OPENAI_API_KEY set)"``,
            ``"gpt-4.1-mini via http://127.0.0.1:8080/v1"`` or ``"gpt-4.1 via OpenAI"``.
        """
        if self.is_offline:
            if self.offline:
                return "offline model (forced by configuration)"
            return "offline model (no OPENAI_API_KEY set)"
        api = " (Chat Completions API)" if self.api == "chat_completions" else ""
        where = self.base_url if self.base_url is not None else "OpenAI"
        return f"{self.model_name} via {where}{api}"


class _ConfiguredProvider(ModelProvider):
    """An OpenAI provider that applies the configured default model and owns its client."""

    def __init__(
        self, inner: OpenAIProvider, *, default_model: str | None, client: AsyncOpenAI | None
    ) -> None:
        self._inner = inner
        self._default_model = default_model
        self._client = client

    def get_model(self, model_name: str | None) -> Model:
        return self._inner.get_model(model_name if model_name is not None else self._default_model)

    async def aclose(self) -> None:
        await self._inner.aclose()
        if self._client is not None:
            await self._client.close()


def build_model_provider(config: ModelConfig) -> ModelProvider:
    """Build the model provider a configuration asks for.

    Args:
        config: Where the models come from.

    Returns:
        An :class:`~chatruntime.agent._offline.OfflineModelProvider` when
        ``config.is_offline``; otherwise a provider of the SDK's OpenAI models
        (``OpenAIResponsesModel`` or ``OpenAIChatCompletionsModel`` per ``config.api``) that
        resolves agents without a model to ``config.default_model``. Call ``await
        provider.aclose()`` when done: it closes the HTTP client the provider made.

    Example:
        ```python
        config = ModelConfig(base_url=server.base_url, default_model="test-model", max_retries=0)
        provider = build_model_provider(config)
        try:
            run_config = RunConfig(model_provider=provider, tracing_disabled=True)
            result = await Runner.run(agent, "Hello", run_config=run_config)
        finally:
            await provider.aclose()
        ```
    """
    if config.is_offline:
        return OfflineModelProvider()
    use_responses = config.api == "responses"
    needs_own_client = (
        config.base_url is not None or config.max_retries is not None or config.timeout is not None
    )
    if not needs_own_client:
        # The SDK's own client setup: the shared connection pool and OpenAI's endpoint.
        inner = OpenAIProvider(
            api_key=config.api_key, use_responses=use_responses, use_responses_websocket=False
        )
        return _ConfiguredProvider(inner, default_model=config.default_model, client=None)
    client_options: dict[str, Any] = {}
    if config.max_retries is not None:
        client_options["max_retries"] = config.max_retries
    if config.timeout is not None:
        client_options["timeout"] = config.timeout
    api_key = config.api_key
    if api_key is None and config.base_url is not None:
        api_key = PLACEHOLDER_API_KEY
    client = AsyncOpenAI(api_key=api_key, base_url=config.base_url, **client_options)
    inner = OpenAIProvider(
        openai_client=client, use_responses=use_responses, use_responses_websocket=False
    )
    return _ConfiguredProvider(inner, default_model=config.default_model, client=client)
