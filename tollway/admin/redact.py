"""Secrets stay out of log lines: an entity's secret endpoint key in an Admin API path is replaced
by `[redacted]`.

uvicorn's access log prints each request path, and an entity whose endpoint key is one of its
secret fields (key-auth's key: `/consumers/{c}/key-auth/{key}`, `/key-auths/{key}`) carries a
secret there. `RedactSecrets` is a logging filter that rewrites such records; `create_app`
installs it on uvicorn's access and error loggers for the entities of its configuration.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from tollway.store.entities.schema import REDACTED, EntitySchema

LOGGERS = ("uvicorn.access", "uvicorn.error")


def secret_segments(entities: Iterable[EntitySchema]) -> list[str]:
    """The path segments after which a path holds a secret: entities whose endpoint key is secret,
    at their own path and under their parents."""
    segments: list[str] = []
    for schema in entities:
        if schema.endpoint_key is not None and schema.endpoint_key in schema.secrets:
            segments += [schema.path, *(nesting.segment for nesting in schema.nested)]
    return sorted(set(segments))


class RedactSecrets(logging.Filter):
    """Rewrites a record's message and string arguments; never drops a record."""

    def __init__(self, segments: list[str]) -> None:
        super().__init__()
        self.segments = segments
        alternatives = "|".join(re.escape(segment) for segment in segments)
        # a secret segment followed by its value, up to the next /, ?, #, space or quote
        self.pattern = re.compile(rf"(/(?:{alternatives})/)[^/?#\s\"']+") if segments else None

    def redact(self, text: str) -> str:
        return self.pattern.sub(r"\1" + REDACTED, text) if self.pattern is not None else text

    def _arg(self, value: Any) -> Any:
        return self.redact(value) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: self._arg(v) for k, v in record.args.items()}
        return True


def install(entities: Iterable[EntitySchema], names: tuple[str, ...] = LOGGERS) -> None:
    """Put a RedactSecrets for these entities on these loggers, replacing one installed before
    (a reload may enable a plugin with secrets of its own)."""
    segments = secret_segments(entities)
    for name in names:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RedactSecrets)]:
            if old.segments == segments:
                break
            logger.removeFilter(old)
        else:
            logger.addFilter(RedactSecrets(segments))
