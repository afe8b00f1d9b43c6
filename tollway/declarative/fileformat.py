"""The declarative file itself: YAML or JSON by its name, and the metadata keys Kong defines.

    _format_version   required: "3.0", or "1.1" / "2.1" (whose regex route paths gain a "~")
    _transform        a boolean (Kong's password hashing on import); Tollway has nothing to
                      transform but key-auth keys, which `keyauth_hash_keys` governs
    _comment, _ignore a string and an array, ignored, at the top and in any entity

Kong's entities that Tollway does not have (upstreams, certificates, ...) are refused by name
unless their array is empty, so that nothing in a file is silently dropped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import yaml

from tollway.declarative.problems import DeclarativeError, Entry

FORMAT_VERSIONS = ("1.1", "2.1", "3.0")
CURRENT_FORMAT = "3.0"
IGNORED_KEYS = ("_comment", "_ignore")
# Kong's own entities (and its bundled plugins' credentials) that Tollway has no counterpart for.
KONG_ONLY = ("upstreams", "targets", "certificates", "snis", "ca_certificates", "vaults", "keys", "key_sets",
             "filter_chains", "parameters", "workspaces", "clustering_data_planes", "basicauth_credentials",
             "hmacauth_credentials", "jwt_secrets", "oauth2_credentials", "oauth2_authorization_codes",
             "oauth2_tokens", "consumer_groups")
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9._~/%-]*$")


def file_kind(path: str | Path) -> str:
    """"json" or "yaml" by the file's name."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yml", ".yaml"):
        return "yaml"
    raise DeclarativeError(f"unknown file type: {path}. (Accepted types: json, yaml)", "")


def read_file(path: str | Path) -> dict[str, Any]:
    """The file's document, a mapping; DeclarativeError when it cannot be read or parsed."""
    kind = file_kind(path)
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise DeclarativeError(f"cannot read {path}: {exc.strerror}", "") from exc
    try:
        document = orjson.loads(text) if kind == "json" else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise DeclarativeError(f"failed parsing declarative configuration: {exc}", "") from exc
    if not isinstance(document, dict):
        raise DeclarativeError("failed parsing declarative configuration: expected an object", "")
    return document


def check_writable(path: str | Path) -> Path:
    """The absolute path to write a document to: a YAML or JSON name, and no file there yet."""
    file_kind(path)
    target = Path(path).absolute()
    if target.exists():
        raise DeclarativeError(f"{target} already exists. Will not overwrite it.", "")
    return target


def write_file(path: str | Path, document: dict[str, Any]) -> None:
    """Write a document as YAML or JSON by the file's name (never over an existing file)."""
    kind = file_kind(path)
    target = check_writable(path)
    if kind == "json":
        data = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    else:
        data = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False).encode()
    with open(target, "xb") as out:
        out.write(data)


def check_metadata(document: dict[str, Any], root: Entry) -> str | None:
    """Check the metadata keys (problems go to `root`); the format version when it is valid."""
    version = document.get("_format_version")
    if "_format_version" not in document:
        root.fields["_format_version"] = "required field missing"
    elif not isinstance(version, str):
        root.fields["_format_version"] = "expected a string"
    elif version not in FORMAT_VERSIONS:
        root.fields["_format_version"] = "expected one of: " + ", ".join(FORMAT_VERSIONS)
    if "_transform" in document and not isinstance(document["_transform"], bool):
        root.fields["_transform"] = "expected a boolean"
    root.fields.update(ignored_key_problems(document))
    for key in document:
        if key.startswith("_") and key not in ("_format_version", "_transform", *IGNORED_KEYS):
            root.fields[key] = "unknown field"
    return version if "_format_version" not in root.fields else None


def ignored_key_problems(item: dict[str, Any]) -> dict[str, str]:
    """`_comment` must be a string and `_ignore` an array."""
    found = {}
    if "_comment" in item and not isinstance(item["_comment"], str):
        found["_comment"] = "expected a string"
    if "_ignore" in item and not isinstance(item["_ignore"], list):
        found["_ignore"] = "expected an array"
    return found


def upgrade_route_paths(route: dict[str, Any]) -> None:
    """A route of a 1.1 or 2.1 file: a path that is a regex there gains the "~" that says so
    in 3.0 (any character beyond letters, digits and `._~/%-` made it one)."""
    paths = route.get("paths")
    if isinstance(paths, list):
        route["paths"] = [f"~{path}" if isinstance(path, str) and not _PLAIN_PATH.match(path) else path
                          for path in paths]
