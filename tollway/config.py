"""Settings: defaults, then a `key = value` file (as kong.conf), then TOLLWAY_<KEY> variables.

Every key is declared once in SETTINGS with its type, default and description; anything else is
an error that names the key, in a file and in the environment alike: every TOLLWAY_* variable
names a setting but those of NOT_SETTINGS (the configuration file, the build, the test suite).
`Settings` is a frozen dataclass so that a worker, the master and the CLI read the same values,
and so that it can be sent to a worker as plain JSON.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tollway.errors import ConfigError
from tollway.plugins import registry

DEFAULT_PREFIX = "/usr/local/tollway" if os.geteuid() == 0 else "~/.tollway"
ENV_PREFIX = "TOLLWAY_"
# TOLLWAY_* variables that are not settings: the file to read, the build's, and the test suite's own.
NOT_SETTINGS = ("TOLLWAY_CONF", "TOLLWAY_PURE_PYTHON", "TOLLWAY_TEST_*")


def is_setting_variable(name: str) -> bool:
    """Whether an environment variable is meant as a setting (TOLLWAY_<KEY>, not one of NOT_SETTINGS)."""
    if not name.startswith(ENV_PREFIX):
        return False
    return not any(name.startswith(other[:-1]) if other.endswith("*") else name == other for other in NOT_SETTINGS)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise ValueError("expected on/off, true/false or yes/no")


def _parse_int(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError("expected a non-negative integer")
    return value


def _parse_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        value = -1.0
    if not value >= 0:  # also rejects nan
        raise ValueError("expected a non-negative number")
    return value


def _parse_slots(text: str) -> int:
    value = text.strip()
    if not value.isdigit() or not 32 <= int(value) <= 1 << 28:
        raise ValueError("expected a number of slots from 32 to 268435456")
    return int(value)


def _parse_nice(text: str) -> int:
    value = text.strip()
    if not value.isdigit() or int(value) > 19:
        raise ValueError("expected a nice value from 0 (the workers' priority) to 19 (the lowest)")
    return int(value)


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def _parse_duration(text: str) -> int:
    value = text.strip().lower()
    number, unit = (value[:-1], value[-1]) if value and value[-1] in "smhd" else (value, "")
    if not number.isdigit():
        raise ValueError("expected a duration: seconds, or a number with an s, m, h or d suffix (1h)")
    return int(number) * _DURATION_UNITS[unit]


def _parse_str(text: str) -> str:
    return text.strip()


def _parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return value

    return parse


_SIZE_SUFFIXES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _parse_size(text: str) -> int:
    value = text.strip().lower()
    number, suffix = value, ""
    if value and value[-1] in "kmg":
        number, suffix = value[:-1], value[-1]
    if not number.isdigit():
        raise ValueError("expected a size in bytes, optionally with a k, m or g suffix")
    return int(number) * _SIZE_SUFFIXES[suffix]


def _parse_listen(text: str) -> str:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8001")
    return f"{host}:{int(port)}"


def _parse_listen_or_off(text: str) -> str:
    """HOST:PORT, or `off` for a listener that is not opened."""
    if text.strip().lower() == "off":
        return "off"
    try:
        return _parse_listen(text)
    except ValueError:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8100, or off") from None


def _items(text: str) -> list[str]:
    """The non-empty items of a comma separated list, stripped."""
    return [item for item in (raw.strip() for raw in text.split(",")) if item]


def _parse_urls(text: str) -> str:
    urls = _items(text)
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected http(s)://host[:port][/path] URLs, comma separated; got '{url}'")
    return ",".join(urls)


def _parse_nameservers(text: str) -> str:
    servers = []
    for server in _items(text):
        host, port = server, ""
        if server.startswith("["):  # [IPv6]:port
            host, _, port = server[1:].partition("]")
            port = port.removeprefix(":")
        elif server.count(":") == 1:
            host, _, port = server.partition(":")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"expected IP[:PORT] addresses, comma separated; got '{server}'") from None
        if port and (not port.isdigit() or not 0 < int(port) < 65536):
            raise ValueError(f"expected a port from 1 to 65535 in '{server}'")
        servers.append(server)
    return ",".join(servers)


def _parse_networks(text: str) -> str:
    networks = []
    for item in _items(text):
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"expected IP addresses or CIDR blocks, comma separated; got '{item}'") from None
        if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
            # Clients are matched as IPv4 (a dual-stack socket shows them as ::ffff:a.b.c.d)
            network = ipaddress.IPv4Network((int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96))
        networks.append(str(network))
    return ",".join(networks)


_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # an HTTP field name (RFC 9110 token)


def _parse_header_name(text: str) -> str:
    name = text.strip()
    if name.lower() == "proxy_protocol":
        raise ValueError("the PROXY protocol is not supported; name a header such as X-Real-IP or X-Forwarded-For")
    if not _TOKEN.match(name):
        raise ValueError(f"expected an HTTP header name; got '{text}'")
    return name


def _parse_plugins(text: str) -> str:
    """Names as given; whether each is installed is checked once every setting is read."""
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        if name == "off":
            return "off"
        if not registry.NAME.match(name):
            raise ValueError(f"expected plugin names (lower-case letters, digits, '-' and '_'), "
                             f"'bundled' or 'off'; got '{name}'")
        names.append(name)
    return ",".join(names) or "off"


def _parse_workers(text: str) -> int:
    if text.strip().lower() == "auto":
        return os.cpu_count() or 1
    if not text.strip().isdigit() or not 1 <= int(text) <= 256:
        raise ValueError("expected 'auto' or an integer from 1 to 256")
    return int(text)


def _parse_access_log(text: str) -> str:
    """`off`, `stdout` or a file; a relative path is made absolute under the prefix once every
    setting is read."""
    value = text.strip()
    if value.lower() in ("off", "stdout"):
        return value.lower()
    if not value or "\0" in value:
        raise ValueError("expected off, stdout or a file path (relative to the prefix)")
    return value


def _parse_log_level(text: str) -> str:
    value = text.strip().lower()
    if value == "warn":
        value = "warning"
    if value not in ("debug", "info", "notice", "warning", "error", "crit"):
        raise ValueError("expected debug, info, notice, warn, error or crit")
    return "info" if value == "notice" else ("critical" if value == "crit" else value)


@dataclass(frozen=True)
class Setting:
    parse: Callable[[str], Any]
    default: str
    description: str


SETTINGS: dict[str, Setting] = {
    "prefix": Setting(_parse_str, DEFAULT_PREFIX,
                      "working directory: pid file, logs, SQLite file, usage spool"),
    "database": Setting(_parse_choice("sqlite", "postgres"), "sqlite", "sqlite (embedded) or postgres"),
    "sqlite_path": Setting(_parse_str, "", "the SQLite file; default PREFIX/tollway.db"),
    "pg_host": Setting(_parse_str, "127.0.0.1", "PostgreSQL host"),
    "pg_port": Setting(_parse_int, "5432", "PostgreSQL port"),
    "pg_user": Setting(_parse_str, "tollway", "PostgreSQL user"),
    "pg_password": Setting(_parse_str, "", "PostgreSQL password"),
    "pg_database": Setting(_parse_str, "tollway", "PostgreSQL database"),
    "pg_schema": Setting(_parse_str, "", "PostgreSQL schema (default: the user's search_path)"),
    "pg_ssl": Setting(_parse_bool, "off", "connect to PostgreSQL over TLS"),
    "pg_timeout": Setting(_parse_float, "5", "PostgreSQL connect and statement timeout, seconds"),
    "pg_pool_size": Setting(_parse_int, "5", "PostgreSQL connections per node"),
    "proxy_listen": Setting(_parse_listen, "0.0.0.0:8000", "address of the proxy"),
    "admin_listen": Setting(_parse_listen, "127.0.0.1:8001", "address of the Admin API"),
    "status_listen": Setting(_parse_listen_or_off, "off",
                             "address of the read-only status API (GET /status, GET /metrics), or off"),
    "plugins": Setting(_parse_plugins, "bundled", "enabled plugins, comma separated; bundled = all that ship"),
    "workers": Setting(_parse_workers, "auto", "proxy worker processes; auto = one per CPU"),
    "log_level": Setting(_parse_log_level, "notice", "debug, info, notice, warn, error or crit"),
    "access_log": Setting(_parse_access_log, "off",
                          "the proxy's access log, one line per call: off, stdout, or a file (relative = under "
                          "the prefix), appended to by every worker"),
    "access_log_format": Setting(_parse_choice("text", "json"), "text",
                                 "text (a combined-log-like line) or json (one object per line, for log shippers)"),
    "db_update_frequency": Setting(_parse_float, "1",
                                   "seconds between checks for configuration written by other nodes"),
    "billable_flush_interval": Setting(_parse_float, "1", "seconds between flushes of metered usage"),
    "billable_flush_nice": Setting(_parse_nice, "19",
                                   "CPU priority (nice, 0-19) of the flusher: above 0 it yields to the proxy workers"),
    "billable_spool_max_bytes": Setting(_parse_int, str(1 << 30),
                                        "usage spool size on disk that raises the alarm (bytes)"),
    "billable_minute_retention": Setting(_parse_int, "7", "days that per-minute usage rows are kept"),
    "billable_hour_retention": Setting(_parse_int, "400", "days that per-hour usage rows are kept"),
    "upstream_keepalive_pool_size": Setting(_parse_int, "64", "idle upstream connections kept per host"),
    "upstream_keepalive_idle_timeout": Setting(_parse_float, "60", "seconds an idle upstream connection is kept"),
    "trusted_ips": Setting(_parse_networks, "",
                           "clients (IPs or CIDR blocks, comma separated) whose X-Forwarded-Proto, -Host, -Port, "
                           "-Path and -Prefix are passed on instead of replaced; 0.0.0.0/0,::/0 trusts every client"),
    "real_ip_header": Setting(_parse_header_name, "X-Real-IP",
                              "the header in which a trusted client (trusted_ips) names the client it serves"),
    "real_ip_recursive": Setting(_parse_bool, "off",
                                 "with real_ip_header X-Forwarded-For: skip trusted addresses from the right"),
    "dns_resolver": Setting(_parse_nameservers, "",
                            "DNS servers for upstream names, IP[:PORT] comma separated; empty = the system's"),
    "upstream_max_header_size": Setting(
        _parse_size, "64k", "largest upstream response head (bytes): status line and headers; 0 = no limit"),
    "drain_timeout": Setting(_parse_float, "30", "seconds a stopping worker waits for in-flight requests"),
    # Limits on what a client may send the proxy (hostile input)
    "client_max_body_size": Setting(_parse_size, "0", "largest request body (bytes, k, m or g suffix); 0 = no limit"),
    "client_header_timeout": Setting(_parse_float, "60", "seconds a client has to send a whole request head"),
    "client_keepalive_timeout": Setting(_parse_float, "75", "seconds an idle client keep-alive connection is kept"),
    "client_max_header_size": Setting(_parse_size, "32k", "largest request head (bytes): request line and headers"),
    "client_max_headers": Setting(_parse_int, "100", "most request headers"),
    "client_max_url_length": Setting(_parse_size, "8k", "longest request target (bytes)"),
    "worker_connections": Setting(_parse_int, "16384", "most client connections one worker holds open"),
    # TLS and Admin API access
    "proxy_ssl_cert": Setting(_parse_str, "", "PEM certificate for the proxy; with proxy_ssl_cert_key, TLS is on"),
    "proxy_ssl_cert_key": Setting(_parse_str, "", "PEM private key for proxy_ssl_cert"),
    "admin_ssl_cert": Setting(_parse_str, "", "PEM certificate for the Admin API; with admin_ssl_cert_key, TLS is on"),
    "admin_ssl_cert_key": Setting(_parse_str, "", "PEM private key for admin_ssl_cert"),
    "admin_header_timeout": Setting(_parse_float, "10", "seconds an Admin API client has to send a request head"),
    "admin_body_timeout": Setting(_parse_float, "60",
                                  "longest pause, seconds, between two reads of an Admin API request body"),
    "admin_keepalive_timeout": Setting(_parse_float, "60", "seconds an idle Admin API keep-alive connection is kept"),
    "admin_max_connections": Setting(_parse_int, "1024", "most Admin API connections at once; more are closed at once"),
    "admin_max_body_size": Setting(_parse_size, "10m", "largest Admin API request body (bytes, k, m or g suffix): 413"),
    "admin_token": Setting(_parse_str, "", "a token every Admin API call must send (Tollway-Admin-Token)"),
    "admin_gui_url": Setting(_parse_urls, "",
                             "URLs (comma separated) of the web GUIs allowed to call the Admin API from a browser: "
                             "its CORS answers name their origins (Kong's admin_gui_url); empty = any origin"),
    "keyauth_hash_keys": Setting(
        _parse_bool, "on", "store key-auth keys hashed (shown in full only when created); off keeps them readable"),
    "shared_counters_slots": Setting(
        _parse_slots, "262144", "counters the workers of a node share exactly (rate limits); 32 bytes each"),
    "billable_spool_failure": Setting(_parse_choice("serve", "refuse"), "serve",
                                      "when the usage spool cannot be written: serve (with an alarm) or refuse (503)"),
    # Invoices (tollway/billing/invoices.py)
    "invoice_grace_period": Setting(_parse_duration, "1h",
                                    "how long after a billing period ends its draft invoice waits for late usage "
                                    "before it is finalized (seconds, or with an s, m, h or d suffix)"),
    "invoice_run_interval": Setting(_parse_duration, "60",
                                    "seconds between two billing runs of a node (drafts, refreshes, finalizing)"),
    "invoice_prefix": Setting(_parse_str, "INV-", "the prefix of invoice numbers; each prefix numbers from 1"),
    "invoice_net_terms": Setting(_parse_int, "30", "days from an invoice's issue date to its due date"),
    "invoice_issuer_name": Setting(_parse_str, "", "the issuer's name printed on invoices"),
    "invoice_issuer_address": Setting(_parse_str, "",
                                      "the issuer's address printed on invoices (a ';' starts a new line)"),
}


@dataclass(frozen=True)
class Settings:
    prefix: str
    database: str
    sqlite_path: str
    pg_host: str
    pg_port: int
    pg_user: str
    pg_password: str
    pg_database: str
    pg_schema: str
    pg_ssl: bool
    pg_timeout: float
    pg_pool_size: int
    proxy_listen: str
    admin_listen: str
    status_listen: str
    plugins: str
    workers: int
    log_level: str
    access_log: str
    access_log_format: str
    db_update_frequency: float
    billable_flush_interval: float
    billable_flush_nice: int
    billable_spool_max_bytes: int
    billable_minute_retention: int
    billable_hour_retention: int
    upstream_keepalive_pool_size: int
    upstream_keepalive_idle_timeout: float
    trusted_ips: str
    real_ip_header: str
    real_ip_recursive: bool
    dns_resolver: str
    upstream_max_header_size: int
    drain_timeout: float
    client_max_body_size: int
    client_header_timeout: float
    client_keepalive_timeout: float
    client_max_header_size: int
    client_max_headers: int
    client_max_url_length: int
    worker_connections: int
    proxy_ssl_cert: str
    proxy_ssl_cert_key: str
    admin_ssl_cert: str
    admin_ssl_cert_key: str
    admin_header_timeout: float
    admin_body_timeout: float
    admin_keepalive_timeout: float
    admin_max_connections: int
    admin_max_body_size: int
    admin_token: str
    admin_gui_url: str
    keyauth_hash_keys: bool
    shared_counters_slots: int
    billable_spool_failure: str
    invoice_grace_period: int
    invoice_run_interval: int
    invoice_prefix: str
    invoice_net_terms: int
    invoice_issuer_name: str
    invoice_issuer_address: str
    config_file: str | None = field(default=None, compare=False)

    @property
    def enabled_plugins(self) -> tuple[str, ...]:
        """Plugin names in the order given, `bundled` expanded, duplicates dropped."""
        if self.plugins == "off":
            return ()
        names: list[str] = []
        for name in self.plugins.split(","):
            for one in registry.bundled() if name == "bundled" else (name,):
                if one not in names:
                    names.append(one)
        return tuple(names)

    @property
    def prefix_path(self) -> Path:
        return Path(self.prefix)

    @property
    def database_path(self) -> Path:
        return Path(self.sqlite_path) if self.sqlite_path else self.prefix_path / "tollway.db"

    @property
    def pid_file(self) -> Path:
        return self.prefix_path / "tollway.pid"

    @property
    def spool_dir(self) -> Path:
        return self.prefix_path / "spool"

    @property
    def shared_counters_path(self) -> Path:
        return self.prefix_path / "shared_counters"

    @property
    def logs_dir(self) -> Path:
        return self.prefix_path / "logs"

    @property
    def access_log_file(self) -> Path | None:
        """The access log's file (absolute), or None when it is off or goes to stdout."""
        return None if self.access_log in ("off", "stdout") else Path(self.access_log)

    def with_overrides(self, **values: Any) -> Settings:
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settings:
        return cls(**data)


def read_conf_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse `key = value` lines; `#` starts a comment, blank lines are skipped."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{number}: expected 'key = value', got '{raw.strip()}'")
        values[key.strip().lower()] = value.strip()
    return values


def load_settings(conf_file: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None,
                  **overrides: str) -> Settings:
    """Defaults < file < TOLLWAY_* environment < explicit overrides. Raises ConfigError."""
    env = os.environ if environ is None else environ
    raw: dict[str, str] = {key: setting.default for key, setting in SETTINGS.items()}
    sources: dict[str, str] = {}
    if conf_file is None and env.get("TOLLWAY_CONF"):
        conf_file = env["TOLLWAY_CONF"]
    if conf_file is not None:
        for key, value in read_conf_file(conf_file).items():
            if key not in SETTINGS:
                raise ConfigError(f"unknown setting '{key}' in {conf_file}")
            raw[key] = value
            sources[key] = str(conf_file)
    for name, value in env.items():
        if not is_setting_variable(name):
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key not in SETTINGS:
            raise ConfigError(f"unknown setting '{key}' from the environment variable {name}")
        raw[key] = value
        sources[key] = name
    for key, value in overrides.items():
        if key not in SETTINGS:
            raise ConfigError(f"unknown setting '{key}'")
        raw[key] = value
        sources[key] = "command line"
    parsed: dict[str, Any] = {}
    for key, setting in SETTINGS.items():
        try:
            parsed[key] = setting.parse(raw[key])
        except ValueError as exc:
            where = f" (from {sources[key]})" if key in sources else ""
            raise ConfigError(f"invalid value '{raw[key]}' for setting '{key}'{where}: {exc}") from None
    parsed["prefix"] = str(Path(os.path.expanduser(parsed["prefix"])).absolute())
    if parsed["sqlite_path"]:
        parsed["sqlite_path"] = str(Path(os.path.expanduser(parsed["sqlite_path"])).absolute())
    if parsed["access_log"] not in ("off", "stdout"):
        parsed["access_log"] = str(Path(parsed["prefix"]) / os.path.expanduser(parsed["access_log"]))
    settings = Settings(**parsed, config_file=str(conf_file) if conf_file else None)
    try:
        registry.check_installed(settings.enabled_plugins)
    except ConfigError as exc:
        where = f" (from {sources['plugins']})" if "plugins" in sources else ""
        raise ConfigError(f"invalid value '{raw['plugins']}' for setting 'plugins'{where}: {exc}") from None
    return settings
