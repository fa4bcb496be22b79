"""Model configuration: which provider the environment selects, its label, and tracing."""

from __future__ import annotations

from typing import Any

import pytest
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.models.openai_responses import OpenAIResponsesModel

from chatruntime.agent._offline import OfflineModelProvider
from chatruntime.agent._providers import ModelConfig, build_model_provider

LOCAL_URL = "http://127.0.0.1:8080/v1"


def test_no_key_and_no_base_url_means_the_offline_model() -> None:
    config = ModelConfig.from_env({})

    assert config.is_offline
    assert config.describe() == "offline model (no OPENAI_API_KEY set)"
    assert config.tracing_disabled
    assert isinstance(build_model_provider(config), OfflineModelProvider)


def test_empty_variables_count_as_unset() -> None:
    config = ModelConfig.from_env({"OPENAI_API_KEY": "", "OPENAI_BASE_URL": " "})

    assert config == ModelConfig()


def test_offline_can_be_forced_even_with_a_key() -> None:
    config = ModelConfig.from_env({"OPENAI_API_KEY": "sk-test", "CHATRUNTIME_OFFLINE": "1"})

    assert config.is_offline
    assert config.describe() == "offline model (forced by configuration)"
    assert config.tracing_disabled
    assert isinstance(build_model_provider(config), OfflineModelProvider)


def test_base_url_selects_an_openai_compatible_server_without_tracing() -> None:
    config = ModelConfig.from_env(
        {"OPENAI_BASE_URL": LOCAL_URL, "CHATRUNTIME_MODEL": "gpt-4.1-mini"}
    )

    assert not config.is_offline
    assert config.describe() == "gpt-4.1-mini via http://127.0.0.1:8080/v1"
    assert config.tracing_disabled
    model = build_model_provider(config).get_model(None)
    assert isinstance(model, OpenAIResponsesModel)
    assert model.model == "gpt-4.1-mini"


def test_chat_completions_api_is_chosen_by_variable() -> None:
    config = ModelConfig.from_env(
        {
            "OPENAI_BASE_URL": LOCAL_URL,
            "CHATRUNTIME_MODEL": "llama3.2",
            "CHATRUNTIME_API": "chat_completions",
        }
    )

    assert config.describe() == "llama3.2 via http://127.0.0.1:8080/v1 (Chat Completions API)"
    model = build_model_provider(config).get_model(None)
    assert isinstance(model, OpenAIChatCompletionsModel)
    assert model.model == "llama3.2"


def test_agent_model_name_wins_over_the_default_model() -> None:
    config = ModelConfig(base_url=LOCAL_URL, default_model="llama3.2")

    model = build_model_provider(config).get_model("qwen2.5")

    assert isinstance(model, OpenAIResponsesModel)
    assert model.model == "qwen2.5"


def test_api_key_alone_selects_openai_with_tracing() -> None:
    config = ModelConfig.from_env({"OPENAI_API_KEY": "sk-test", "CHATRUNTIME_MODEL": "gpt-4.1"})

    assert config.uses_openai_platform
    assert not config.tracing_disabled
    assert config.describe() == "gpt-4.1 via OpenAI"
    model = build_model_provider(config).get_model(None)
    assert isinstance(model, OpenAIResponsesModel)
    assert model.model == "gpt-4.1"


def test_overrides_take_precedence_over_the_environment() -> None:
    config = ModelConfig.from_env(
        {"OPENAI_BASE_URL": LOCAL_URL}, base_url="http://127.0.0.1:9/v1", max_retries=0
    )

    assert (config.base_url, config.max_retries) == ("http://127.0.0.1:9/v1", 0)


def test_api_key_is_never_shown() -> None:
    config = ModelConfig(api_key="sk-secret", base_url=LOCAL_URL, default_model="m")

    assert "sk-secret" not in repr(config)
    assert "sk-secret" not in config.describe()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CHATRUNTIME_OFFLINE": "maybe"}, "CHATRUNTIME_OFFLINE must be 1 or 0"),
        ({"CHATRUNTIME_API": "completions"}, "CHATRUNTIME_API must be 'responses' or"),
    ],
)
def test_meaningless_variables_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_env(environ)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_retries": -1}, "max_retries must be zero or positive"),
        ({"timeout": 0}, "timeout must be positive"),
        ({"api": "completions"}, "api must be 'responses' or 'chat_completions'"),
    ],
)
def test_invalid_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig(**options)


@pytest.mark.parametrize("url", ["127.0.0.1:11434/v1", "localhost/v1", "ftp://host/v1"])
def test_a_base_url_without_an_http_scheme_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="the base URL must start with http:// or https://"):
        ModelConfig(base_url=url)
