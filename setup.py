"""Builds Tollway. The proxy's per-request modules are compiled to C with mypyc.

Those modules are plain, type-checked Python: compiling them changes no behaviour, only their
speed (about twice as fast per request; see the README's Performance section). Set
TOLLWAY_PURE_PYTHON=1 to build without compiling, for a machine that has no C compiler.
"""

from __future__ import annotations

import os

from setuptools import setup

# Everything a proxied request runs through, and the flusher's per-record loop (aggregate.py);
# nothing else (the Admin API, the store and the rest of the flusher stay interpreted: they are
# not per request).
HOT_PATH = [
    "tollway/proxy/call.py",
    "tollway/proxy/chain.py",
    "tollway/proxy/connection.py",
    "tollway/proxy/exchange.py",
    "tollway/proxy/headers.py",
    "tollway/proxy/protocol.py",
    "tollway/proxy/request_head.py",
    "tollway/proxy/request_repeat.py",
    "tollway/proxy/response_repeat.py",
    "tollway/proxy/response_writer.py",
    "tollway/proxy/responses.py",
    "tollway/proxy/router.py",
    "tollway/proxy/server.py",
    "tollway/proxy/state.py",
    "tollway/proxy/tunnel.py",
    "tollway/proxy/upstream.py",
    "tollway/proxy/upstream_connection.py",
    "tollway/proxy/upstream_target.py",
    "tollway/plugins/base.py",
    "tollway/plugins/acl/handler.py",
    "tollway/plugins/billable/handler.py",
    "tollway/plugins/key_auth/handler.py",
    "tollway/plugins/key_auth/keys.py",
    "tollway/metering/aggregate.py",
    "tollway/metering/latency.py",
    "tollway/metering/spool_line.py",
    "tollway/metering/spool.py",
]


def compiled_modules() -> list:
    if os.environ.get("TOLLWAY_PURE_PYTHON"):
        return []
    from mypyc.build import mypycify

    return mypycify(HOT_PATH, opt_level="3", group_name="tollway_hot_path")


setup(ext_modules=compiled_modules())
