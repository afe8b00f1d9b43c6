"""Fields marked secret (a plugin config's password) are shown redacted and kept when sent back."""

from __future__ import annotations

from tollway.store.entities.crud import _merge
from tollway.store.entities.schema import REDACTED, redact

FIELDS = {
    "name": {"type": "string"},
    "config": {"type": "record", "fields": {
        "host": {"type": "string"},
        "password": {"type": "string", "secret": True},
        "nested": {"type": "record", "fields": {"token": {"type": "string", "secret": True}}},
    }},
}


def test_secret_values_are_redacted_at_any_depth_and_absent_ones_stay_null() -> None:
    entity = {"name": "p", "config": {"host": "h", "password": "hunter2", "nested": {"token": "t"}}}
    assert redact(FIELDS, entity) == {
        "name": "p", "config": {"host": "h", "password": REDACTED, "nested": {"token": REDACTED}}}
    assert redact(FIELDS, {"name": "p", "config": {"host": "h", "password": None}})["config"]["password"] is None
    assert entity["config"]["password"] == "hunter2"  # the stored entity is not changed


def test_a_patch_that_sends_a_redacted_secret_back_keeps_the_stored_one() -> None:
    old = {"name": "p", "config": {"host": "h", "password": "hunter2", "nested": {"token": "t"}}}
    shown = redact(FIELDS, old)
    merged = _merge(old, {"config": {**shown["config"], "host": "h2"}}, FIELDS)
    assert merged["config"] == {"host": "h2", "password": "hunter2", "nested": {"token": "t"}}
    changed = _merge(old, {"config": {"password": "new"}}, FIELDS)
    assert changed["config"]["password"] == "new"
