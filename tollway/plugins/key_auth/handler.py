"""key-auth: identify the consumer by an API key in a header or the query string (as Kong's).

The key lookup is a dict built once per configuration (key hash -> (credential, consumer)) and
shared by every key-auth handler through `runtime.indexes`; the first request with a key costs one
SHA-256 of it (about a microsecond), later ones a dict probe. The snapshot carries hashes; a readable
key (an older snapshot, or a test's) is hashed when the index is built, so both work the same.
Keys never reach a log line. A credential with a ttl carries `expires_at` in the snapshot: its key
is refused once the clock passes it, with no database on the request path (Kong's ttl).
"""

from __future__ import annotations

import time
from typing import Any

from tollway.plugins import base
from tollway.plugins.base import Call, Reply
from tollway.plugins.key_auth.keys import hash_key, stored_form
from tollway.proxy.call import Call as ProxyCall
from tollway.proxy.call import Identity, identity_headers

NO_KEY = "No API key found in request"
BAD_KEY = "Invalid authentication credentials"
NO_ANONYMOUS = "An unexpected error occurred"
CHALLENGE = {"WWW-Authenticate": 'Key realm="tollway"'}


class KeyIndex:
    """Credentials by key and consumers by id and username, from one configuration snapshot."""

    __slots__ = ("by_key", "by_username", "consumers", "known")

    def __init__(self, snapshot: dict[str, Any], consumers: dict[str, dict[str, Any]] | None = None) -> None:
        if consumers is None:
            consumers = {c["id"]: c for c in snapshot.get("consumers") or ()}
        self.consumers = consumers
        self.by_username = {c["username"]: c for c in consumers.values() if c.get("username")}
        self.by_key: dict[str, tuple[dict[str, Any], dict[str, Any], float]] = {}
        # Keys presented and found since this configuration was applied, with the identity headers
        # they give and when they expire (0.0: never), so a client's next call costs no hash and no
        # header building. Only valid keys enter, so it holds at most one entry per credential.
        self.known: dict[str, tuple[dict[str, Any], dict[str, Any], Identity, float]] = {}
        for credential in snapshot.get("keyauth_credentials") or ():
            consumer = consumers.get((credential.get("consumer") or {}).get("id") or "")
            if consumer is not None and credential.get("key"):
                expires = float(credential.get("expires_at") or 0.0)
                self.by_key[stored_form(credential["key"])] = (credential, consumer, expires)

    @classmethod
    def of(cls, runtime: Any) -> KeyIndex:
        """The index shared through `runtime.indexes`, built on first use."""
        indexes = getattr(runtime, "indexes", None)
        if indexes is None:
            return cls(runtime.snapshot, getattr(runtime, "consumers", None))
        index = indexes.get("key-auth")
        if index is None:
            index = indexes["key-auth"] = cls(runtime.snapshot, getattr(runtime, "consumers", None))
        return index  # type: ignore[no-any-return]


class Handler(base.Handler):
    """Checks the key; answers 401 in Kong's words, or authenticates the consumer."""

    PRIORITY = 1250

    def __init__(self, conf: dict[str, Any], runtime: Any) -> None:
        super().__init__(conf, runtime)
        self.index = KeyIndex.of(runtime)
        # Each key name, and as a lower-cased header name
        self.key_names: tuple[tuple[str, bytes], ...] = tuple(
            (name, name.lower().encode("latin-1")) for name in conf.get("key_names") or ("apikey",))
        self.in_header = bool(conf.get("key_in_header", True))
        self.in_query = bool(conf.get("key_in_query", True))
        self.hide = bool(conf.get("hide_credentials", False))
        self.run_on_preflight = bool(conf.get("run_on_preflight", True))
        anonymous = conf.get("anonymous")
        self.anonymous: str | None = anonymous or None

    def access(self, call: Call) -> Reply | None:
        # Bundled and compiled with the proxy: the call is the proxy's own, whose fields are then
        # read directly rather than looked up by name.
        assert isinstance(call, ProxyCall)
        if not self.run_on_preflight and call.method == "OPTIONS":
            return None
        if call.consumer is not None and call.credential is not None:
            return None  # another auth plugin already identified the consumer
        key = self._find_key(call)
        if key is not None:
            index = self.index
            known = index.known.get(key)
            if known is None:
                found = index.by_key.get(hash_key(key))
                if found is not None:
                    credential, consumer, expires = found
                    known = index.known[key] = (credential, consumer, identity_headers(consumer, credential), expires)
            if known is not None:
                credential, consumer, identity, expires = known
                # a ttl's last second still counts, as Kong's `ttl >= now`
                if not expires or time.time() < expires + 1.0:
                    call.authenticate(consumer, credential, identity=identity)
                    return None
        if self.anonymous is not None:
            anonymous = self.index.consumers.get(self.anonymous) or self.index.by_username.get(self.anonymous)
            if anonymous is None:
                return Reply(500, {"message": NO_ANONYMOUS})
            call.authenticate(anonymous, None, anonymous=True)
            return None
        if key is None:
            return Reply(401, {"message": NO_KEY}, dict(CHALLENGE))
        return Reply(401, {"message": BAD_KEY}, dict(CHALLENGE))

    def _find_key(self, call: ProxyCall) -> str | None:
        for name, header in self.key_names:
            if self.in_header:
                value = _header(call, header)
                if value is not None:
                    if self.hide:
                        call.set_header(name, None)
                    return value
            if self.in_query:
                value = call.query_arg(name)
                if value is not None:
                    if self.hide:
                        call.remove_query_arg(name)
                    return value
        return None


def _header(call: ProxyCall, name: bytes) -> str | None:
    """call.header() for a lower-cased name already encoded."""
    for hname, value in call.headers:
        if hname == name:
            return value.decode("latin-1")
    return None
