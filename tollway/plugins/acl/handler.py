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

from typing import Any

from tollway.plugins import base
from tollway.plugins.base import Call, Reply
from tollway.proxy.call import Call as ProxyCall

HEADER = "X-Consumer-Groups"
FORBIDDEN = "You cannot consume this service"
UNAUTHORIZED = "Unauthorized"

# A verdict: (status, header value): 0 lets the call in with that value; 403 refuses it; 401
# refuses it with 401 when no credential was presented (an anonymous consumer), else 403.
Verdict = tuple[int, str]
LET_IN, REFUSED, NO_GROUPS = 0, 403, 401


def header_text(groups: list[str]) -> str:
    """Groups joined by ", " as a header value: control characters percent-encoded, so a group
    name cannot start a header line, and UTF-8 carried byte for byte (the proxy writes latin-1)."""
    joined = ", ".join(groups)
    safe = "".join(f"%{ord(ch):02X}" if ord(ch) < 32 or ord(ch) == 127 else ch for ch in joined)
    return safe.encode("utf-8").decode("latin-1")


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
        self.groups: dict[str, tuple[frozenset[str], str]] = {
            consumer_id: (frozenset(groups), header_text(groups)) for consumer_id, groups in names.items()}

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
        consumer_id = str(consumer.get("id"))
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
        call.set_header(HEADER, None if self.hide else header)
        return None

    def judge(self, consumer_id: str) -> Verdict:
        """This configuration's verdict on a consumer, from its groups."""
        found = self.index.groups.get(consumer_id)
        if found is None:
            return (LET_IN, "") if self.deny else (NO_GROUPS, "")
        groups, header = found
        member = not self.listed.isdisjoint(groups)
        if member == self.deny:
            return REFUSED, header
        return LET_IN, header
