"""What a plugin handler sees of the proxy, and the phases it may implement.

The proxy builds one Handler per plugin row (its `config` already validated and filled with the
schema's defaults) whenever configuration is applied, never per request. For each request the
proxy picks the handlers that apply (Kong's precedence: the most specific of route, service,
consumer and global wins for each plugin name), orders them by PRIORITY (highest first) and calls:

  access(call)           before the upstream is contacted; may change the request the upstream
                         receives (set_path, set_query, set_method, set_header...), set headers of
                         the response to come (set_response_header), and answer itself by
                         returning a Reply. It may instead return an awaitable (a coroutine or an
                         asyncio Future) of a Reply or None, for a plugin that needs a network round
                         trip: the request waits (nothing else does), then the remaining access
                         handlers run, or the Reply is sent. If the client leaves meanwhile, the
                         call is finished as any call whose client left (status 499, metered once)
                         and what the awaitable gives is dropped; if it raises, the client gets
                         500, as when a synchronous access raises.
  header_filter(call)    the upstream's status and headers are known (call.status, call.response_headers,
                         which set_response_header and its kin now change)
  body_filter(call, chunk, last) -> chunk    every response body chunk
  meter(call)            once, synchronously, just BEFORE the last byte of the response is written to
                         the client: status and byte counts are final. Billing-grade records go here,
                         so that a response a client received is never missing from the record.
  log(call)              after the response is complete; must not delay the response

Every phase but access is a plain (synchronous) method, and a synchronous access costs nothing for
the asynchronous ones being possible. `call.ctx` carries state from one phase, or one plugin, to
another (Kong's kong.ctx.shared); it is made on first use.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from mypy_extensions import mypyc_attr


@dataclass(slots=True)
class Reply:
    """A response a plugin (or the proxy) sends instead of proxying: Kong's `kong.response.exit`."""

    status: int
    body: dict[str, Any] | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Call(Protocol):
    """One proxied request as the plugins see it (implemented by the proxy).

    Changes to the request apply to what the upstream receives; they are made in access. Names
    and values are checked: a bad one raises ValueError, and a header the proxy writes itself
    (Host, framing and hop-by-hop headers, X-Forwarded-*, X-Real-IP, Via; in a response,
    Content-Length, Transfer-Encoding, Connection and Via) cannot be set.
    """

    method: str                  # the client's method (set_method changes what the upstream receives)
    path: str                    # the request path as the client sent it, without the query
    query: str                   # the raw query string, without '?', as the upstream will receive it
    client_ip: str               # the address that connected (a load balancer's, behind one), as Kong's get_ip
    forwarded_ip: str            # the client a trusted peer names in real_ip_header, else client_ip (get_forwarded_ip)
    started_at: float            # time.time() when the request head was received
    route: dict[str, Any]        # the matched route, as the Admin API shows it
    service: dict[str, Any] | None
    consumer: dict[str, Any] | None     # set by an auth plugin
    credential: dict[str, Any] | None   # set by an auth plugin
    status: int                  # the status sent (or to be sent) to the client
    response_headers: list[tuple[bytes, bytes]]
    request_bytes: int           # bytes received from the client for this request (head + body)
    response_bytes: int          # bytes sent to the client for this response (head + body)

    @property
    def ctx(self) -> dict[str, Any]:
        """A dict shared by every phase and every plugin of this call (Kong's kong.ctx.shared),
        made on first use: a call that never asks for it allocates nothing. Name keys after the
        plugin ("rate-limiting.remaining"), as every plugin of the call sees the same dict."""

    def header(self, name: str) -> str | None:
        """The first request header of that name (case-insensitive), or None."""

    def set_header(self, name: str, value: str | None) -> None:
        """Set (or with None, remove) a request header sent to the upstream, replacing those of that name."""

    def add_header(self, name: str, value: str) -> None:
        """Add a request header sent to the upstream, after those of the same name."""

    def clear_header(self, name: str) -> None:
        """Remove every request header of that name from what the upstream receives."""

    def set_path(self, path: str) -> None:
        """The path the upstream receives (Kong's kong.service.request.set_path): it replaces the one
        the route made (after strip_path and the service's path) and is sent as given, so
        percent-encode what needs it. It must start with '/' and hold only printable ASCII but
        '?' and '#'. X-Forwarded-Path still says the client's path."""

    def set_query(self, query: str) -> None:
        """The raw query string the upstream receives, without '?' ("" for none); printable ASCII but '#'."""

    def query_arg(self, name: str) -> str | None:
        """The first query argument of that name, decoded, or None."""

    def set_query_arg(self, name: str, value: str) -> None:
        """Give the query argument `name` the one value `value` (both are encoded), where the first
        of that name was, or at the end."""

    def remove_query_arg(self, name: str) -> None:
        """Drop every query argument of that name from what the upstream receives."""

    def set_method(self, method: str) -> None:
        """The method the upstream receives (an upper-case token). `method` stays the client's, for
        which the response is framed, so a change to or from HEAD, and CONNECT, are refused."""

    def set_response_header(self, name: str, value: str) -> None:
        """Set a header of the response to the client, replacing those of that name. In access it
        applies to whichever response is sent: the upstream's (before header_filter runs) or a
        Reply (a plugin's, or the gateway's own, such as a 502); in header_filter, to the
        upstream's headers. Later, the head is sent: RuntimeError."""

    def add_response_header(self, name: str, value: str) -> None:
        """Add a header to the response, after those of that name (as set_response_header)."""

    def clear_response_header(self, name: str) -> None:
        """Remove the response headers of that name (as set_response_header)."""

    def authenticate(self, consumer: dict[str, Any] | None, credential: dict[str, Any] | None,
                     anonymous: bool = False,
                     identity: tuple[tuple[bytes, bytes], ...] | None = None) -> None:
        """Record the consumer and credential; sets the X-Consumer-*, X-Credential-Identifier and
        X-Anonymous-Consumer headers for the upstream (whatever the client sent under those names is dropped).

        `identity` may carry those headers as tollway.proxy.call.identity_headers() built them for
        the same arguments, for a plugin that keeps them per credential."""


class Runtime(Protocol):
    """Worker-wide state handed to every handler."""

    settings: Any                # tollway.config.Settings
    spool: Any                   # tollway.metering.spool.SpoolWriter or None
    consumers: dict[str, dict[str, Any]]  # consumer id -> consumer
    snapshot: dict[str, Any]     # the whole configuration snapshot (see tollway/store/snapshot.py)
    indexes: dict[str, Any]      # lookup tables a plugin builds once per configuration, by plugin name


@mypyc_attr(allow_interpreted_subclasses=True)  # plugins outside the compiled hot path subclass it
class Handler:
    """Base of every plugin handler; subclasses override only the phases they need."""

    PRIORITY: ClassVar[int] = 0

    def __init__(self, conf: dict[str, Any], runtime: Runtime) -> None:
        self.conf = conf
        self.runtime = runtime

    @classmethod
    def init_worker(cls, worker: Any) -> None:
        """Once per worker process, before it serves (Kong's init_worker): `worker` is a
        tollway.plugins.node.WorkerContext."""
        return None

    def access(self, call: Call) -> Reply | None | Awaitable[Reply | None]:
        return None

    def header_filter(self, call: Call) -> None:
        return None

    def body_filter(self, call: Call, chunk: bytes, last: bool) -> bytes:
        return chunk

    def meter(self, call: Call) -> None:
        return None

    def log(self, call: Call) -> None:
        return None

    def phases(self) -> frozenset[str]:
        """The phases the proxy calls on this handler: by default, those its class overrides.

        A handler whose configuration makes a phase a no-op leaves it out, so the hot path
        does not call it at all.
        """
        return overridden_phases(type(self))


# Which phases a handler overrides, so the proxy calls only those.
PHASES = ("access", "header_filter", "body_filter", "meter", "log")


def overridden_phases(handler_class: type[Handler]) -> frozenset[str]:
    return frozenset(p for p in PHASES if getattr(handler_class, p) is not getattr(Handler, p))
