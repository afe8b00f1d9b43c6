"""What an import does with a file: nesting, references by name, ids that make it idempotent, one
transaction, and what it leaves alone (an import is not a sync)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.declarative.conftest import dump, load
from tollway.config import Settings
from tollway.declarative.problems import DeclarativeError
from tollway.store.db import run_with_database
from tollway.store.entities.catalog import Catalog

EVERYTHING = """
_format_version: "3.0"
_comment: a file with one of everything
services:
- name: billing
  url: http://billing.internal:8080/v1
  tags: [team-a]
  routes:
  - name: invoices
    paths: [/invoices]
    plugins:
    - name: acl
      config: {allow: [premium]}
  - paths: [/unnamed]
  plugins:
  - name: key-auth
    config: {key_names: [apikey, x-api-key]}
routes:
- name: top
  paths: [/top]
  service: billing
consumers:
- username: ann
  _comment: ignored, as Kong's
  keyauth_credentials:
  - key: ann-key
  acls:
  - group: premium
  - group: staff
- custom_id: cust-7
plugins:
- name: billable
- name: billable
  consumer: ann
  service: billing
"""


def _counts(settings: Settings) -> dict[str, int]:
    return {name: len(entities) for name, entities in dump(settings).items() if not name.startswith("_")}


def _by(settings: Settings, entity: str, field: str) -> dict[Any, dict[str, Any]]:
    return {item[field]: item for item in dump(settings)[entity]}


def test_nested_entities_and_references_by_name(db_settings: Settings) -> None:
    report = load(db_settings, EVERYTHING)
    assert (report.entities, report.written) == (13, 13)
    assert _counts(db_settings) == {"acls": 2, "consumers": 2, "keyauth_credentials": 1, "plugins": 4,
                                    "routes": 3, "services": 1}
    billing = _by(db_settings, "services", "name")["billing"]
    assert (billing["host"], billing["port"], billing["path"], billing["tags"]) == (
        "billing.internal", 8080, "/v1", ["team-a"])
    routes = _by(db_settings, "routes", "name")
    assert {route["service"] for route in routes.values()} == {billing["id"]}
    ann = _by(db_settings, "consumers", "username")["ann"]
    assert sorted(acl["group"] for acl in dump(db_settings)["acls"] if acl["consumer"] == ann["id"]) == [
        "premium", "staff"]
    plugins = dump(db_settings)["plugins"]
    acl = next(p for p in plugins if p["name"] == "acl")
    assert acl["route"] == routes["invoices"]["id"] and acl["config"]["allow"] == ["premium"]
    scoped = next(p for p in plugins if p["name"] == "billable" and p["consumer"])
    assert (scoped["consumer"], scoped["service"]) == (ann["id"], billing["id"])


def test_importing_again_changes_nothing_unnamed_routes_included(db_settings: Settings) -> None:
    load(db_settings, EVERYTHING)
    before = dump(db_settings)
    report = load(db_settings, EVERYTHING)
    assert report.written == 0
    assert dump(db_settings) == before


def test_an_edited_file_updates_what_it_names_and_leaves_the_rest(db_settings: Settings) -> None:
    load(db_settings, EVERYTHING)
    ann_id = _by(db_settings, "consumers", "username")["ann"]["id"]
    edited = EVERYTHING.replace("http://billing.internal:8080/v1", "https://billing.internal").replace(
        "  - group: staff\n", "")
    report = load(db_settings, edited)
    assert report.written == 1  # the service; an import deletes nothing (not a sync)
    billing = _by(db_settings, "services", "name")["billing"]
    assert (billing["protocol"], billing["port"], billing["path"]) == ("https", 443, None)
    assert _by(db_settings, "consumers", "username")["ann"]["id"] == ann_id
    assert len(dump(db_settings)["acls"]) == 2


def test_entities_made_by_the_admin_api_are_matched_by_name(db_settings: Settings) -> None:
    load(db_settings, '_format_version: "3.0"\nconsumers:\n- username: ann\n  custom_id: first\n')
    made = _by(db_settings, "consumers", "username")["ann"]
    load(db_settings, '_format_version: "3.0"\nconsumers:\n- username: ann\n  custom_id: second\n')
    assert _by(db_settings, "consumers", "username")["ann"] | {"updated_at": 0} == \
        made | {"custom_id": "second", "updated_at": 0}


def test_a_refused_write_rolls_back_the_whole_file(db_settings: Settings) -> None:
    load(db_settings, '_format_version: "3.0"\nconsumers:\n- username: taken\n')
    before = dump(db_settings)
    clash = """
_format_version: "3.0"
services:
- name: new-service
  host: example.com
consumers:
- id: 11111111-2222-4333-8444-555555555555
  username: taken
"""
    with pytest.raises(DeclarativeError) as raised:
        load(db_settings, clash)
    assert str(raised.value).splitlines() == [
        "Failed importing:", "in 'consumers':", "  - in entry 1 of 'consumers' (username: taken):",
        "    UNIQUE violation detected on '{username=\"taken\"}'"]
    assert dump(db_settings) == before  # the service written before the clash is gone with it


def test_references_and_duplicates_are_checked_within_the_file(db_settings: Settings) -> None:
    bad = """
_format_version: "3.0"
routes:
- name: r
  paths: [/r]
  service: nowhere
consumers:
- username: bob
  keyauth_credentials:
  - key: k
    consumer: bob
- username: bob
plugins:
- name: billable
  consumer: {id: 6f9619ff-8b86-4011-b42d-00c04fc964ff}
"""
    with pytest.raises(DeclarativeError) as raised:
        load(db_settings, bad)
    message = str(raised.value)
    assert "invalid reference 'service: nowhere' (no such entry in 'services')" in message
    assert """invalid reference 'consumer: {"id":"6f9619ff-8b86-4011-b42d-00c04fc964ff"}' (no such entry in \
'consumers')""" in message
    assert "uniqueness violation: 'consumers' entity with username set to 'bob' already declared" in message
    assert "in 'consumer': value must be null" in message  # a nested credential's consumer is its parent
    assert "'k'" not in message  # a key never appears in a message
    assert dump(db_settings) == {"_format_version": "3.0", "_transform": False}


def test_metadata_and_unknown_keys(db_settings: Settings) -> None:
    cases = {
        "services: []\n": "in '_format_version': required field missing",
        "_format_version: 1.1\n": "in '_format_version': expected a string",
        "_format_version: '4.0'\n": "in '_format_version': expected one of: 1.1, 2.1, 3.0",
        "_format_version: '3.0'\n_transform: maybe\n": "in '_transform': expected a boolean",
        "_format_version: '3.0'\n_info: {}\n": "in '_info': unknown field",
        "_format_version: '3.0'\nservicez: []\n": "in 'servicez': unknown field",
        "_format_version: '3.0'\nupstreams: [{name: u}]\n": "in 'upstreams': Tollway has no 'upstreams'",
    }
    for text, problem in cases.items():
        with pytest.raises(DeclarativeError) as raised:
            load(db_settings, text)
        assert problem in str(raised.value), text
    load(db_settings, "_format_version: '3.0'\nupstreams: []\ncertificates: []\n_ignore: [anything]\n")


def test_format_1_1_regex_paths_gain_a_tilde(db_settings: Settings) -> None:
    load(db_settings, r"""
_format_version: "1.1"
services:
- name: s
  host: h
  routes:
  - name: nested
    paths: [/plain/path, /users/\d+]
routes:
- name: top
  paths: ["/items/(?<id>[0-9]+)"]
""")
    routes = _by(db_settings, "routes", "name")
    assert routes["nested"]["paths"] == ["/plain/path", r"~/users/\d+"]
    assert routes["top"]["paths"] == ["~/items/(?<id>[0-9]+)"]


def test_ttls_and_hashed_keys_survive_the_round_trip(db_settings: Settings, other_db_settings: Settings) -> None:
    load(db_settings, """
_format_version: "3.0"
consumers:
- username: ann
  keyauth_credentials:
  - key: temporary
    ttl: 3600
""")
    exported = dump(db_settings)
    credential = exported["keyauth_credentials"][0]
    assert credential["key"].startswith("sha256:") and 3598 <= credential["ttl"] <= 3600
    load(other_db_settings, exported)
    again = dump(other_db_settings)["keyauth_credentials"][0]
    assert again["key"] == credential["key"] and abs(again["ttl"] - credential["ttl"]) <= 1
    assert load(db_settings, exported).written == 0


def test_a_key_is_never_moved_to_another_consumer(db_settings: Settings) -> None:
    load(db_settings, '_format_version: "3.0"\nconsumers:\n- username: ann\n  keyauth_credentials:\n  - key: k1\n')
    before = dump(db_settings)
    with pytest.raises(DeclarativeError) as raised:
        load(db_settings, '_format_version: "3.0"\nconsumers:\n- username: bob\n  keyauth_credentials:\n'
                          '  - key: k1\n')
    assert str(raised.value).endswith("UNIQUE violation detected on '{key=\"[redacted]\"}'")
    assert dump(db_settings) == before


def test_billing_is_not_part_of_a_declarative_file(db_settings: Settings) -> None:
    """Plans and subscriptions have a history of versions: `tollway plans apply` declares them."""
    load(db_settings, "_format_version: '3.0'\nconsumers: [{username: poppy}]\n")

    async def price_list(db: Any) -> None:
        catalog = Catalog(db_settings, db)
        await catalog.crud("plans").create({"name": "pro", "currency": "USD"}, form=False)
        await catalog.crud("meters").create({"name": "calls"}, form=False)

    run_with_database(db_settings, price_list)
    exported = dump(db_settings)
    assert not {"meters", "plans", "charges", "entitlements", "subscriptions"} & set(exported)
    with pytest.raises(DeclarativeError) as raised:
        load(db_settings, "_format_version: '3.0'\nplans: [{name: basic, currency: USD}]\n")
    assert "in 'plans': unknown field" in str(raised.value)
