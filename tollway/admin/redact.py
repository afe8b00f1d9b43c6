"""Secrets stay out of log lines: key-auth keys in Admin API paths are replaced by `[redacted]`.

uvicorn's access log prints each request path, and `/consumers/{c}/key-auth/{key}` or
`/key-auths/{key}` carry a key. `RedactKeys` is a logging filter that rewrites such records;
`create_app` installs it on uvicorn's access and error loggers (idempotently).
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"
# a key-auth path segment followed by a key (or a key's hash), up to the next /, ?, space or quote
_KEY_IN_PATH = re.compile(r"(/key-auths?/)[^/?#\s\"']+")
LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact(text: str) -> str:
    return _KEY_IN_PATH.sub(r"\1" + REDACTED, text)


def _redact_arg(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactKeys(logging.Filter):
    """Rewrites a record's message and string arguments; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True


def install(names: tuple[str, ...] = LOGGERS) -> None:
    """Add RedactKeys to these loggers, once each."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in logger.filters):
            logger.addFilter(RedactKeys())
