"""`tollway config` as Kong's `kong config` (spec/02-integration/02-cmd/11-config_spec.lua), with
the declarative file from Kong's documentation: it imports, exports and re-imports unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from tests.admin.conftest import serve
from tests.declarative.conftest import EXAMPLE, config
from tests.proxy.conftest import request
from tollway.config import Settings


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_parse_checks_a_file_without_a_database(tmp_path: Path, settings: Settings) -> None:
    code, out, err = config(settings, "parse", str(EXAMPLE))
    assert (code, out, err) == (0, "parse successful\n", "")
    code, _, err = config(settings, "parse")
    assert code == 1 and err.strip() == "Error: expected a declarative configuration file; see `tollway config --help`"
    odd = tmp_path / "kong.txt"
    odd.write_text("_format_version: '3.0'\n")
    code, _, err = config(settings, "parse", str(odd))
    assert code == 1 and err.strip() == f"Error: unknown file type: {odd}. (Accepted types: json, yaml)"


def test_the_documentation_example_imports_exports_and_reimports_unchanged(
        tmp_path: Path, db_settings: Settings, other_db_settings: Settings) -> None:
    code, out, err = config(db_settings, "db_import", str(EXAMPLE))
    assert (code, out, err) == (0, "parse successful, beginning import\nimport successful\n", "")
    assert config(db_settings, "db_export", "first.yml", cwd=tmp_path)[0] == 0
    first = (tmp_path / "first.yml").read_text()
    exported = yaml.safe_load(first)
    assert exported["_format_version"] == "3.0" and exported["_transform"] is False
    assert [key for key in exported if not key.startswith("_")] == [
        "consumers", "keyauth_credentials", "plugins", "routes", "services"]
    service = exported["services"][0]
    assert (service["name"], service["protocol"], service["host"], service["port"], service["path"]) == (
        "my-service", "https", "example.com", 443, None)
    assert exported["routes"][0]["service"] == service["id"] and exported["routes"][0]["paths"] == ["/"]
    assert exported["plugins"][0]["config"]["key_names"] == ["apikey"]
    assert exported["keyauth_credentials"][0]["consumer"] == exported["consumers"][0]["id"]

    # the example again, then the export, into the same database: nothing changes
    assert config(db_settings, "db_import", str(EXAMPLE))[0] == 0
    assert config(db_settings, "db_import", str(tmp_path / "first.yml"))[0] == 0
    assert config(db_settings, "db_export", "second.yml", cwd=tmp_path)[0] == 0
    assert (tmp_path / "second.yml").read_text() == first

    # the export into another database gives the same configuration, times included
    assert config(other_db_settings, "db_import", str(tmp_path / "first.yml"))[0] == 0
    assert config(other_db_settings, "db_export", "third.yml", cwd=tmp_path)[0] == 0
    assert (tmp_path / "third.yml").read_text() == first


def test_the_imported_example_serves_as_kongs_would(db_settings: Settings, echo_upstream: int) -> None:
    from tests.plugins.conftest import Gateway
    from tests.proxy.conftest import ProxyHarness

    assert config(db_settings, "db_import", str(EXAMPLE))[0] == 0
    proxy = ProxyHarness(db_settings)
    try:
        for admin in serve(db_settings):
            api: httpx.Client = admin.client
            service = api.get("/services/my-service").json()
            assert api.get("/routes/my-route").json()["service"] == {"id": service["id"]}
            assert len(api.get("/services/my-service/plugins").json()["data"]) == 1
            assert api.get("/consumers/my-user/key-auth/my-key").status_code == 200
            # the example's upstream is example.com: point it at the local echo server
            api.patch("/services/my-service", json={"url": f"http://127.0.0.1:{echo_upstream}"})
            Gateway(db_settings, api, proxy, echo_upstream).sync()
            missing = request(proxy.port, "GET", "/")
            assert missing.status == 401 and missing.json() == {"message": "No API key found in request"}
            answer = request(proxy.port, "GET", "/anything", headers={"apikey": "my-key"})
            assert answer.status == 200 and answer.json()["headers"]["x-consumer-username"] == "my-user"
    finally:
        proxy.close()


def test_an_invalid_file_changes_nothing_and_names_each_problem(tmp_path: Path, db_settings: Settings) -> None:
    assert config(db_settings, "db_import", str(EXAMPLE))[0] == 0
    assert config(db_settings, "db_export", "before.yml", cwd=tmp_path)[0] == 0
    bad = tmp_path / "bad.yml"
    bad.write_text("""\
_format_version: "3.0"
consumers:
- username: someone-new
services:
- name: my-service
  host: 1
  port: 99999
  routes: nope
""")
    code, out, err = config(db_settings, "db_import", str(bad))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "Error: Failed parsing:",
        "in 'services':",
        "  - in entry 1 of 'services' (name: my-service):",
        "    in 'host': expected a string",
        "    in 'port': value should be between 0 and 65535",
        "    in 'routes': expected an array",
    ]
    assert config(db_settings, "db_export", "after.yml", cwd=tmp_path)[0] == 0
    assert (tmp_path / "after.yml").read_text() == (tmp_path / "before.yml").read_text()


def test_export_never_overwrites_and_init_writes_a_file_that_parses(tmp_path: Path, db_settings: Settings) -> None:
    shutil.copy(EXAMPLE, tmp_path / "kong.yml")
    code, _, err = config(db_settings, "db_export", cwd=tmp_path)
    assert code == 1 and err.strip() == f"Error: {tmp_path / 'kong.yml'} already exists. Will not overwrite it."
    assert (tmp_path / "kong.yml").read_text() == EXAMPLE.read_text()
    assert config(db_settings, "init", "start.yml", cwd=tmp_path)[0] == 0
    assert config(db_settings, "parse", str(tmp_path / "start.yml"))[:2] == (0, "parse successful\n")
    code, _, err = config(db_settings, "init", "start.yml", cwd=tmp_path)
    assert code == 1 and "already exists" in err
    code, out, _ = config(db_settings, "db_export", "-")
    assert code == 0 and yaml.safe_load(out) == {"_format_version": "3.0", "_transform": False}
    assert config(db_settings, "db_export", "out.json", cwd=tmp_path)[0] == 0
    assert (tmp_path / "out.json").read_text().startswith("{")
    assert config(db_settings, "db_import", str(tmp_path / "out.json"))[0] == 0
