"""What the commands log, and where: quiet by default, the SDK's records only when asked."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import chatruntime  # noqa: F401 - importing it installs the handler
from chatruntime.cli._logging import (
    DEPENDENCY_LOGGERS,
    command_logging,
    configure_cli_logging,
    level_number,
)
from chatruntime.cli._options import parse_options, parse_serve_options

TIMEOUT = 120


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in DEPENDENCY_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


def _emit_one_of_each() -> None:
    logging.getLogger("chatruntime.stores").warning("lease given back late")
    logging.getLogger("chatruntime.stores").info("index rebuilt")
    logging.getLogger("openai.agents").error("Error streaming response")
    logging.getLogger("httpx").info('HTTP Request: POST /v1/responses "HTTP/1.1 200 OK"')


def test_by_default_only_chatruntime_warnings_and_errors_are_shown() -> None:
    out = io.StringIO()
    configure_cli_logging(None, stream=out)
    _emit_one_of_each()
    assert out.getvalue() == "WARNING chatruntime.stores: lease given back late\n"


def test_a_level_given_shows_the_sdk_records_from_that_level() -> None:
    out = io.StringIO()
    configure_cli_logging("error", stream=out)
    _emit_one_of_each()
    assert out.getvalue() == "ERROR openai.agents: Error streaming response\n"


def test_debug_shows_every_record() -> None:
    out = io.StringIO()
    configure_cli_logging("debug", stream=out)
    _emit_one_of_each()
    assert out.getvalue().splitlines() == [
        "WARNING chatruntime.stores: lease given back late",
        "INFO chatruntime.stores: index rebuilt",
        "ERROR openai.agents: Error streaming response",
        'INFO httpx: HTTP Request: POST /v1/responses "HTTP/1.1 200 OK"',
    ]


def test_off_shows_nothing_not_even_through_the_last_resort_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_cli_logging("off")
    _emit_one_of_each()
    logging.getLogger("chatruntime").critical("disk on fire")
    assert capsys.readouterr() == ("", "")


def test_command_logging_puts_the_configuration_back_afterwards() -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger("openai.agents").level)
    with command_logging("debug", stream=io.StringIO()):
        assert root.level == logging.DEBUG
        assert logging.getLogger("openai.agents").level == logging.DEBUG
    assert (list(root.handlers), root.level, logging.getLogger("openai.agents").level) == before


def test_unknown_levels_are_refused() -> None:
    with pytest.raises(ValueError, match="log level must be one of debug, info, warning"):
        level_number("verbose")


def test_the_library_logger_has_a_null_handler() -> None:
    # An application that configured no logging never sees chatruntime's records on stderr.
    handlers = logging.getLogger("chatruntime").handlers
    assert [type(handler) for handler in handlers] == [logging.NullHandler]


def test_log_level_is_an_option_of_the_repl_and_of_serve() -> None:
    assert parse_options([]).log_level is None
    assert parse_options(["--log-level", "debug"]).log_level == "debug"
    assert parse_options(["--log-level", "off"]).log_level == "off"
    default = parse_serve_options([])
    assert (default.log_level, default.dependency_logs) == ("info", False)
    asked = parse_serve_options(["--log-level", "warning"])
    assert (asked.log_level, asked.dependency_logs) == ("warning", True)


def _chat_with_a_model_that_is_down(
    tmp_path: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "CHATRUNTIME_"))
    }
    env["OPENAI_API_KEY"] = "sk-test"
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    return subprocess.run(
        [sys.executable, "-m", "chatruntime", "--data", str(tmp_path / "data"),
         "--base-url", "http://127.0.0.1:9/v1", *options],
        input="Hello\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )  # fmt: skip


MODEL_ERROR = (
    "error: MODEL_ERROR: the model at http://127.0.0.1:9/v1/responses could not be reached: "
    "Connection error."
)


def test_a_model_error_is_printed_once_without_the_sdks_log_line(tmp_path: Path) -> None:
    done = _chat_with_a_model_that_is_down(tmp_path)
    assert done.stdout.splitlines()[-1] == MODEL_ERROR
    assert done.stderr == ""


def test_asked_for_the_sdks_error_record_goes_to_stderr(tmp_path: Path) -> None:
    done = _chat_with_a_model_that_is_down(tmp_path, "--log-level", "error")
    assert done.stdout.splitlines()[-1] == MODEL_ERROR
    assert done.stderr.splitlines()[0] == "ERROR openai.agents: Error streaming response"
