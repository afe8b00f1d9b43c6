"""rate-limiting: at most N calls per second, minute, hour, day, month and year (Kong's rate-limiting).

The fields, defaults and messages are Kong 3.x's (kong/plugins/rate-limiting/schema.lua), with the
flat `redis_*` fields of older Kong accepted as shorthands of `redis.*`. Tollway adds `tz`: the IANA
zone whose calendar the windows follow. See docs/rate-limiting.md.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PERIODS = ("second", "minute", "hour", "day", "month", "year")  # shortest first, as Kong orders them
POLICIES = ("local", "cluster", "redis")
SYNC_RATE_REALTIME = -1

REDIS_FIELDS: dict[str, dict[str, Any]] = {
    "host": {"type": "string", "description": "the Redis host (required with the redis policy)"},
    "port": {"type": "integer", "default": 6379, "between": (0, 65535), "description": "the Redis server's port"},
    "timeout": {"type": "integer", "default": 2000, "between": (0, 2**31 - 2),
                "description": "milliseconds a call waits for Redis at most (connect and answer)"},
    "username": {"type": "string", "description": "Redis ACL user (Redis 6+); none: no ACL authentication"},
    "password": {"type": "string", "len_min": 0, "secret": True, "description": "Redis password; none: no AUTH"},
    "database": {"type": "integer", "default": 0, "description": "the Redis database number"},
    "ssl": {"type": "boolean", "default": False, "description": "connect to Redis over TLS"},
    "ssl_verify": {"type": "boolean", "default": False, "description": "verify the Redis server's certificate"},
    "server_name": {"type": "string", "description": "the SNI name sent to Redis over TLS"},
}


def _limit(period: str) -> dict[str, Any]:
    return {"type": "number", "gt": 0, "description": f"calls allowed per {period}"}


def validate_config(config: dict[str, Any]) -> str | dict[str, Any] | None:
    """Kong's custom validator (a longer period's limit not lower, sync_rate only with redis),
    then Tollway's own checks: a known time zone, a usable status."""
    for i, shorter in enumerate(PERIODS):
        low = config.get(shorter)
        if low is None:
            continue
        for longer in PERIODS[i + 1:]:
            high = config.get(longer)
            if high is not None and high < low:
                return f"The limit for {longer}({high:.1f}) cannot be lower than the limit for {shorter}({low:.1f})"
    sync_rate = config.get("sync_rate", SYNC_RATE_REALTIME)
    if config.get("policy") != "redis" and sync_rate != SYNC_RATE_REALTIME:
        return "sync_rate can only be used with the redis policy"
    if config.get("policy") == "redis" and sync_rate not in (None, SYNC_RATE_REALTIME) \
            and sync_rate < 0.02:
        return "sync_rate must be greater than 0.02, or -1 to disable"
    problems: dict[str, Any] = {}
    try:
        ZoneInfo(config.get("tz") or "")
    except (ZoneInfoNotFoundError, ValueError):
        problems["tz"] = f"unknown time zone '{config.get('tz')}': expected an IANA zone such as Europe/Paris"
    code = config.get("error_code")
    if code is not None and (code != int(code) or not 100 <= code <= 599):
        problems["error_code"] = "expected an HTTP status: an integer between 100 and 599"
    return problems or None


SCHEMA: dict[str, Any] = {
    "name": "rate-limiting",
    # Kong's: after the auth plugins (key-auth 1250) and acl (950), which say who is calling;
    # before billable (5), whose meter phase still records a refused call with its status.
    "priority": 910,
    "scopes": ("global", "service", "route", "consumer"),
    "config": {
        **{period: _limit(period) for period in PERIODS},
        "limit_by": {"type": "string", "default": "consumer",
                     "one_of": ("consumer", "credential", "ip", "service", "header", "path"),
                     "description": "what a counter counts: calls of a consumer, a credential, an IP address, "
                                    "a service, a header's value or a path (an unknown consumer or credential: "
                                    "its IP address)"},
        "header_name": {"type": "string", "header_name": True,
                        "description": "the header whose value is counted (limit_by = header)"},
        "path": {"type": "string", "starts_with": ("/",), "description": "the path counted (limit_by = path)"},
        "policy": {"type": "string", "default": "local", "len_min": 0, "one_of": POLICIES,
                   "description": "where counters live: local (the node's workers share them), cluster "
                                  "(the database: every node shares them), redis (every node shares them)"},
        "fault_tolerant": {"type": "boolean", "required": True, "default": True,
                           "description": "serve calls when the counters' store fails (true), or answer 500"},
        "redis": {"type": "record", "fields": REDIS_FIELDS, "description": "the Redis server (policy = redis)"},
        "hide_client_headers": {"type": "boolean", "required": True, "default": False,
                                "description": "send no X-RateLimit-*, RateLimit-* or Retry-After headers"},
        "error_code": {"type": "number", "default": 429, "gt": 0, "description": "the status of a refused call"},
        "error_message": {"type": "string", "default": "API rate limit exceeded",
                          "description": "the message of a refused call"},
        "sync_rate": {"type": "number", "required": True, "default": SYNC_RATE_REALTIME,
                      "description": "Kong's counter sync interval, accepted with the redis policy; Tollway "
                                     "always counts synchronously (exactly)"},
        "tz": {"type": "string", "default": "UTC",
               "description": "the IANA time zone whose calendar the windows follow (Tollway's own)"},
    },
    # Kong's entity checks, in its words
    "checks": (
        {"at_least_one_of": PERIODS},
        {"conditional": {"if_field": "policy", "if_eq": "redis", "then_field": "redis.host"}},
        {"conditional": {"if_field": "policy", "if_eq": "redis", "then_field": "redis.port"}},
        {"conditional": {"if_field": "policy", "if_eq": "redis", "then_field": "redis.timeout"}},
        {"conditional": {"if_field": "limit_by", "if_eq": "header", "then_field": "header_name"}},
        {"conditional": {"if_field": "limit_by", "if_eq": "path", "then_field": "path"}},
    ),
    "custom_validator": validate_config,
    # Older Kong's flat fields, taken as the nested ones (Kong's shorthand_fields)
    "shorthand_fields": {f"redis_{name}": ("redis", name) for name in
                         ("host", "port", "password", "username", "ssl", "ssl_verify", "server_name", "timeout",
                          "database")},
}
