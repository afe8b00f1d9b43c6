"""Adds `X-Hello: <config.value>` to every response: the upstream's, or one the gateway or a
plugin answers itself (a 401 from key-auth, a 429 from a rate limit)."""

from __future__ import annotations

from typing import Any

from hello_header.schema import SCHEMA
from tollway.plugins import base


class Handler(base.Handler):
    PRIORITY = SCHEMA["priority"]

    def __init__(self, conf: dict[str, Any], runtime: base.Runtime) -> None:
        super().__init__(conf, runtime)  # once per configuration, never per request
        self.value: str = conf["value"]

    def access(self, call: base.Call) -> None:
        # Set in access, a response header goes out with whatever response the call gets.
        call.set_response_header("X-Hello", self.value)
