"""The HTTP service: the session manager over HTTP, with streaming, API keys and metrics.

Needs ``pip install 'chatruntime[service]'``. Run it with ``chatruntime serve``, or build the
app with :func:`create_app` and serve or mount it yourself.

Example:
    >>> from chatruntime.service import KeyRing, create_app
    >>> app = create_app(manager, agents, keys=KeyRing.from_file("keys.txt"))
"""

from ._app import create_app
from ._auth import KEYS_ENV, ApiKey, KeyFileError, KeyRing, hash_key, new_key
from ._errors import HTTP_STATUS, http_status
from ._logging import JsonFormatter, RequestContextFilter, TextFormatter, configure_logging

__all__ = [
    "HTTP_STATUS",
    "KEYS_ENV",
    "ApiKey",
    "JsonFormatter",
    "KeyFileError",
    "KeyRing",
    "RequestContextFilter",
    "TextFormatter",
    "configure_logging",
    "create_app",
    "hash_key",
    "http_status",
    "new_key",
]
