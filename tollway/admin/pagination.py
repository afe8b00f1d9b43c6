"""Kong's list parameters: size (1..1000, default 100), an opaque offset, and tags filters."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from tollway.admin import errors
from tollway.store.entities.validation import is_uuid

DEFAULT_SIZE = 100
MAX_SIZE = 1000


MAX_TAGS = 5
# A tag in a filter: printable ASCII but ',' and '/', or any non-ASCII character (an invalid UTF-8
# byte arrives as U+FFFD, which is refused with it).
_TAG = re.compile(r"^[\x20-\x2b\x2d\x2e\x30-\x7e\u0080-\ufffc\ufffe-\U0010ffff]+$")
# The same characters as JSON Schema states them (the complement: controls, DEL, ',', '/', U+FFFD),
# and a tags filter: 1 to MAX_TAGS tags joined by ',' or by '/'.
TAG_CHARS = r"[^\x00-\x1f\x7f,/\ufffd]"
TAGS_PATTERN = (rf"^{TAG_CHARS}+(,{TAG_CHARS}+){{0,{MAX_TAGS - 1}}}$|"
                rf"^{TAG_CHARS}+(/{TAG_CHARS}+){{0,{MAX_TAGS - 1}}}$")


@dataclass(frozen=True)
class PageQuery:
    size: int
    after: str | None            # the id the previous page ended with
    tags: list[str] | None
    any_tag: bool                # tags=a/b: either; tags=a,b: both
    given: dict[str, str]        # tags and size as given, carried into `next`

    @classmethod
    def parse(cls, query: Mapping[str, str], *, nested: bool = False) -> PageQuery:
        """Read size, offset and tags, or raise Kong's invalid size / offset / options errors.
        Under a parent (/consumers/{c}/plugins) tags are ignored, as Kong's."""
        size = DEFAULT_SIZE
        given: dict[str, str] = {}
        tags, any_tag = None, False
        if "tags" in query and not nested:
            given["tags"] = query["tags"]
            tags, any_tag = parse_tags(query["tags"])
        if "size" in query:
            given["size"] = query["size"]
            try:
                size = int(query["size"])
            except ValueError:
                raise errors.invalid_size("size must be a number") from None
            if not 1 <= size <= MAX_SIZE:
                raise errors.invalid_size(f"size must be an integer between 1 and {MAX_SIZE}")
        after = decode_offset(query["offset"]) if query.get("offset") else None
        return cls(size, after, tags, any_tag, given)

    def next_path(self, path: str, last_id: str | None) -> tuple[str | None, str | None]:
        """(next, offset) for the answer: a path that reads the next page, and its offset."""
        if last_id is None:
            return None, None
        offset = encode_offset(last_id)
        return f"{path}?{urlencode({'offset': offset, **self.given})}", offset


def parse_tags(text: str) -> tuple[list[str], bool]:
    """`a,b` (entities with both) or `a/b` (with either): the tags, and whether any one will do."""
    if not text:
        raise errors.invalid_options("tags", "cannot be null")
    if "," in text and "/" in text:
        raise errors.invalid_options("tags", "invalid filter syntax")
    any_tag = "/" in text
    tags = text.split("/" if any_tag else ",")
    if not all(_TAG.match(tag) for tag in tags):
        raise errors.invalid_options("tags", "invalid filter syntax")
    if len(tags) > MAX_TAGS:
        raise errors.invalid_options("tags", f"cannot query more than {MAX_TAGS} tags")
    return tags, any_tag


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
