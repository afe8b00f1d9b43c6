"""Unit tests without a database: form decoding and typing, validation, Kong's error messages."""

from __future__ import annotations

from tollway.admin.body import decode_form
from tollway.admin.errors import lua_pretty, schema_violation
from tollway.admin.pagination import decode_offset, encode_offset
from tollway.plugins.key_auth.schema import SCHEMA as KEY_AUTH
from tollway.store.entities.routes import ROUTES
from tollway.store.entities.services import split_url
from tollway.store.entities.validation import infer_types, validate

CONFIG = KEY_AUTH["config"]


def test_form_keys_nest_and_index() -> None:
    pairs = [("paths[]", "/a"), ("paths[]", "/b"), ("config.key_names[2]", "y"), ("config.key_names[1]", "x"),
             ("service.id", "i"), ("hosts", "h1"), ("hosts", "h2")]
    assert decode_form(pairs) == {"paths": ["/a", "/b"], "config": {"key_names": ["x", "y"]},
                                  "service": {"id": "i"}, "hosts": ["h1", "h2"]}


def test_form_values_are_typed_by_the_schema() -> None:
    data = infer_types({"paths": "/a", "strip_path": "false", "regex_priority": "3", "name": "", "x": "1"},
                       ROUTES.fields)
    assert data == {"paths": ["/a"], "strip_path": False, "regex_priority": 3, "name": None, "x": "1"}


def test_validation_fills_defaults_and_collects_every_problem() -> None:
    config, errors = validate(CONFIG, {})
    assert errors == {} and config["key_names"] == ["apikey"] and config["anonymous"] is None
    _, errors = validate(CONFIG, {"key_names": [1, "ok"], "hide_credentials": None, "extra": True})
    assert errors == {"key_names": ["expected a string", None], "hide_credentials": "required field missing",
                      "extra": "unknown field"}


def test_schema_violation_message_is_kongs() -> None:
    error = schema_violation({"name": "required field missing"})
    assert error.status == 400
    assert error.body == {"code": 2, "name": "schema violation",
                          "message": "schema violation (name: required field missing)",
                          "fields": {"name": "required field missing"}}
    two = schema_violation({"@entity": ["whole"], "config": {"a": "bad"}})
    assert two.body["message"] == "2 schema violations (whole; config.a: bad)"


def test_lua_pretty_prints_like_penlight() -> None:
    assert lua_pretty({"username": "x"}) == '{username="x"}'
    assert lua_pretty({"b": None, "a": {"id": "1"}}) == '{a={id="1"},b=null}'


def test_url_shorthand() -> None:
    data = {"url": "http://mockbin.org:8080"}
    assert split_url(data) == {}
    assert data == {"protocol": "http", "host": "mockbin.org", "port": 8080, "path": None}
    data = {"url": "nohost"}  # no scheme: Kong reads it as a path, and says so field by field
    assert split_url(data) == {}
    assert data == {"protocol": "http", "host": None, "port": 80, "path": "nohost"}


def test_offsets_round_trip() -> None:
    ident = "11111111-2222-3333-4444-555555555555"
    assert decode_offset(encode_offset(ident)) == ident


def test_a_form_key_that_starts_with_an_index_is_a_400_not_a_500():
    # found by schemathesis: `[]=x` put an integer key at the top, which no JSON answer can hold
    import pytest

    from tollway.admin.errors import ApiError

    for key in ("[]", "[0]", "[1][name]"):
        with pytest.raises(ApiError) as caught:
            decode_form([(key, "x")])
        assert caught.value.status == 400 and "does not start with a name" in caught.value.body["message"]
