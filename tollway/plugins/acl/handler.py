"""acl: let a consumer in or keep it out by its groups, as Kong's acl plugin.

The groups of every consumer are indexed once per configuration (consumer id -> the set of its
groups, and the X-Consumer-Groups value listing them in the order they were added) and shared by
every acl handler through `runtime.indexes`. Each handler then remembers its verdict per consumer,
so a call costs one dict probe and, unless hidden, one header set.

Kong's decisions, for a call an auth plugin has (or has not) identified:
  no consumer                              401 "Unauthorized", or 403 when a credential was found
  a consumer without groups, `allow`       401 for an anonymous consumer, else 403
  a consumer without groups, `deny`        let in, with an empty X-Consumer-Groups
  `allow`: no listed group / `deny`: one   403 "You cannot consume this service"
The header goes upstream unless `hide_groups_header`; a client's own X-Consumer-Groups never does.
"""

from __future__ import annotations

from typing import Any, Final

from tollway.plugins import base
from tollway.plugins.base import Call, Reply
from tollway.proxy.call import Call as ProxyCall

# Final: compiled, a constant is inlined rather than looked up in the module's dict at each use.
HEADER: Final = b"x-consumer-groups"  # as the proxy keeps header names: lower-cased bytes
FORBIDDEN: Final = "You cannot consume this service"
UNAUTHORIZED: Final = "Unauthorized"

# A verdict: (status, header): 0 lets the call in with that header (None: none, hidden); 403
# refuses it; 401 refuses it with 401 when no credential was presented (an anonymous consumer),
# else 403.
Verdict = tuple[int, tuple[bytes, bytes] | None]
LET_IN: Final = 0
REFUSED: Final = 403
NO_GROUPS: Final = 401


def header_value(groups: list[str]) -> bytes:
    """Groups joined by ", " as a header value: UTF-8, with control characters percent-encoded so
    that a group name cannot start a header line of its own."""
    joined = ", ".join(groups)
    return "".join(f"%{ord(ch):02X}" if ord(ch) < 32 or ord(ch) == 127 else ch for ch in joined).encode()


class GroupIndex:
    """Consumer id -> (its groups, the X-Consumer-Groups value), from one configuration snapshot."""

    __slots__ = ("groups",)

    def __init__(self, snapshot: dict[str, Any]) -> None:
        ordered = sorted(snapshot.get("acls") or (), key=lambda acl: (acl.get("created_at") or 0, acl["id"]))
        names: dict[str, list[str]] = {}
        for acl in ordered:
            consumer_id = (acl.get("consumer") or {}).get("id")
            group = acl.get("group")
            if consumer_id and isinstance(group, str):
                names.setdefault(consumer_id, []).append(group)
        self.groups: dict[str, tuple[frozenset[str], bytes]] = {
            consumer_id: (frozenset(groups), header_value(groups)) for consumer_id, groups in names.items()}

    @classmethod
    def of(cls, runtime: Any) -> GroupIndex:
        """The index shared through `runtime.indexes`, built on first use."""
        indexes = getattr(runtime, "indexes", None)
        if indexes is None:
            return cls(runtime.snapshot)
        index = indexes.get("acl")
        if index is None:
            index = indexes["acl"] = cls(runtime.snapshot)
        return index  # type: ignore[no-any-return]


class Handler(base.Handler):
    """Refuses calls by group (401/403 in Kong's words) or passes the groups upstream."""

    PRIORITY = 950

    def __init__(self, conf: dict[str, Any], runtime: Any) -> None:
        super().__init__(conf, runtime)
        denied = conf.get("deny") or []
        self.deny = bool(denied)
        self.listed: frozenset[str] = frozenset(denied if denied else conf.get("allow") or ())
        self.hide = bool(conf.get("hide_groups_header", False))
        self.index = GroupIndex.of(runtime)
        self.verdicts: dict[str, Verdict] = {}  # by consumer id, filled as consumers call

    def access(self, call: Call) -> Reply | None:
        assert isinstance(call, ProxyCall)  # bundled with the proxy: its fields are read directly
        consumer = call.consumer
        if consumer is None:
            if call.credential is not None:
                return Reply(403, {"message": FORBIDDEN})
            return Reply(401, {"message": UNAUTHORIZED})
        consumer_id: str = consumer["id"]
        verdict = self.verdicts.get(consumer_id)
        if verdict is None:
            verdict = self.verdicts[consumer_id] = self.judge(consumer_id)
        status, header = verdict
        if status == NO_GROUPS:
            status = REFUSED if call.credential is not None else NO_GROUPS
        if status == REFUSED:
            return Reply(403, {"message": FORBIDDEN})
        if status == NO_GROUPS:
            return Reply(401, {"message": UNAUTHORIZED})
        _put_header(call, header)
        return None

    def judge(self, consumer_id: str) -> Verdict:
        """This configuration's verdict on a consumer, from its groups."""
        found = self.index.groups.get(consumer_id)
        value = b"" if found is None else found[1]
        header = None if self.hide else (HEADER, value)
        if found is None:
            return (LET_IN, header) if self.deny else (NO_GROUPS, None)
        member = not self.listed.isdisjoint(found[0])
        if member == self.deny:
            return REFUSED, None
        return LET_IN, header


def _put_header(call: ProxyCall, header: tuple[bytes, bytes] | None) -> None:
    """Send `header` upstream in place of any X-Consumer-Groups the client sent (None: none).
    The list is replaced, never changed in place: the proxy may share it with a kept request head."""
    headers = call.headers
    sent = False
    for name, _ in headers:
        if name == HEADER:
            sent = True
            break
    if sent:
        headers = [item for item in headers if item[0] != HEADER]
    elif header is None:
        return
    else:
        headers = list(headers)
    if header is not None:
        headers.append(header)
        if call.hop_tokens and HEADER in call.hop_tokens:  # a client's Connection header cannot drop it
            call.hop_tokens = call.hop_tokens - {HEADER}
    call.headers = headers
