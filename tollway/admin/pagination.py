"""Kong's list parameters: size (1..1000, default 100), an opaque offset, and tags filters."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from tollway.admin import errors
from tollway.store.entities.validation import is_uuid

DEFAULT_SIZE = 100
MAX_SIZE = 1000


@dataclass(frozen=True)
class PageQuery:
    size: int
    after: str | None            # the id the previous page ended with
    tags: list[str] | None
    any_tag: bool                # tags=a/b: either; tags=a,b: both
    given: dict[str, str]        # size and tags as given, carried into `next`

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> PageQuery:
        """Read size, offset and tags, or raise Kong's invalid size / offset / options errors."""
        size = DEFAULT_SIZE
        given: dict[str, str] = {}
        if "size" in query:
            given["size"] = query["size"]
            try:
                size = int(query["size"])
            except ValueError:
                raise errors.invalid_size("size must be a number") from None
            if not 1 <= size <= MAX_SIZE:
                raise errors.invalid_size(f"size must be an integer between 1 and {MAX_SIZE}")
        after = decode_offset(query["offset"]) if query.get("offset") else None
        tags, any_tag = None, False
        if query.get("tags"):
            given["tags"] = text = query["tags"]
            if "," in text and "/" in text:
                raise errors.invalid_options("tags", "invalid filter: cannot mix 'and' and 'or'")
            any_tag = "/" in text
            tags = [tag for tag in text.replace("/", ",").split(",") if tag]
        return cls(size, after, tags, any_tag, given)

    def next_path(self, path: str, last_id: str | None) -> tuple[str | None, str | None]:
        """(next, offset) for the answer: a path that reads the next page, and its offset."""
        if last_id is None:
            return None, None
        offset = encode_offset(last_id)
        return f"{path}?{urlencode({'offset': offset, **self.given})}", offset


def encode_offset(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_offset(offset: str) -> str:
    try:
        last_id = base64.urlsafe_b64decode(offset + "=" * (-len(offset) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise errors.invalid_offset(offset, "bad base64 encoding") from None
    if not is_uuid(last_id):
        raise errors.invalid_offset(offset, "bad base64 encoding")
    return last_id
