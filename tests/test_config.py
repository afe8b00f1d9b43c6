"""Settings: defaults < file < TOLLWAY_* environment; every bad key or value is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollway.config import SETTINGS, Settings, load_settings
from tollway.errors import ConfigError


def test_defaults_match_the_documented_ones(tmp_path: Path) -> None:
    settings = load_settings(environ={"TOLLWAY_PREFIX": str(tmp_path)})
    assert settings.database == "sqlite"
    assert settings.database_path == tmp_path / "tollway.db"
    assert settings.proxy_listen == "0.0.0.0:8000"
    assert settings.admin_listen == "127.0.0.1:8001"
    assert settings.enabled_plugins == ("key-auth", "acl", "rate-limiting", "prometheus", "billable")
    assert settings.workers >= 1


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "tollway.conf"
    conf.write_text("# a comment\n\nworkers = 3\nlog_level = warn   # trailing comment\ndatabase=postgres\n")
    settings = load_settings(conf, environ={"TOLLWAY_WORKERS": "2"})
    assert settings.workers == 2
    assert settings.log_level == "warning"
    assert settings.database == "postgres"
    assert settings.config_file == str(conf)


def test_conf_file_can_come_from_tollway_conf(tmp_path: Path) -> None:
    conf = tmp_path / "tollway.conf"
    conf.write_text("pg_port = 6543\n")
    assert load_settings(environ={"TOLLWAY_CONF": str(conf)}).pg_port == 6543


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("workers", "many", "expected 'auto' or an integer from 1 to 256"),
    ("database", "mysql", "expected one of sqlite, postgres"),
    ("proxy_listen", "8000", "expected HOST:PORT"),
    ("status_listen", "8100", "expected HOST:PORT, e.g. 127.0.0.1:8100, or off"),
    ("pg_ssl", "maybe", "expected on/off"),
    ("plugins", "bundled,no-such-plugin", "plugin 'no-such-plugin' is not installed"),
    ("pg_port", "-1", "expected a non-negative integer"),
    ("upstream_max_header_size", "64kb", "expected a size in bytes, optionally with a k, m or g suffix"),
    ("billable_flush_nice", "20", "expected a nice value from 0 (the workers' priority) to 19 (the lowest)"),
    ("billable_flush_nice", "-5", "expected a nice value from 0"),
])
def test_a_bad_value_names_the_key_the_source_and_what_was_expected(key: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"TOLLWAY_" + key.upper(): value})
    message = str(info.value)
    assert f"'{key}'" in message and f"TOLLWAY_{key.upper()}" in message and expected in message
    assert "\n" not in message


def test_upstream_max_header_size_takes_a_size_with_a_suffix_and_0_for_no_limit() -> None:
    assert load_settings(environ={}).upstream_max_header_size == 64 << 10
    assert load_settings(environ={"TOLLWAY_UPSTREAM_MAX_HEADER_SIZE": "1k"}).upstream_max_header_size == 1024
    assert load_settings(environ={}, upstream_max_header_size="2m").upstream_max_header_size == 2 << 20
    assert load_settings(environ={"TOLLWAY_UPSTREAM_MAX_HEADER_SIZE": "0"}).upstream_max_header_size == 0


def test_an_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    conf = tmp_path / "tollway.conf"
    conf.write_text("admin_lisen = 127.0.0.1:9001\n")
    with pytest.raises(ConfigError, match="unknown setting 'admin_lisen'"):
        load_settings(conf, environ={})


def test_a_line_without_equals_is_an_error(tmp_path: Path) -> None:
    conf = tmp_path / "tollway.conf"
    conf.write_text("workers 2\n")
    with pytest.raises(ConfigError, match=r"tollway.conf:1: expected 'key = value'"):
        load_settings(conf, environ={})


def test_plugins_list_expands_bundled_once_and_off_disables_all() -> None:
    bundled = load_settings(environ={"TOLLWAY_PLUGINS": "bundled,billable"}).enabled_plugins
    assert bundled == ("key-auth", "acl", "rate-limiting", "prometheus", "billable")
    assert load_settings(environ={"TOLLWAY_PLUGINS": "billable"}).enabled_plugins == ("billable",)
    assert load_settings(environ={"TOLLWAY_PLUGINS": "off"}).enabled_plugins == ()


def test_settings_round_trip_as_plain_data() -> None:
    settings = load_settings(environ={})
    assert Settings.from_dict(settings.to_dict()) == settings
    assert set(SETTINGS) <= set(settings.to_dict())


def test_billable_flush_nice_defaults_to_the_lowest_priority() -> None:
    assert load_settings(environ={}).billable_flush_nice == 19
    assert load_settings(environ={"TOLLWAY_BILLABLE_FLUSH_NICE": " 0 "}).billable_flush_nice == 0


def test_status_listen_is_off_by_default_and_takes_an_address_or_off() -> None:
    assert load_settings(environ={}).status_listen == "off"
    assert load_settings(environ={"TOLLWAY_STATUS_LISTEN": "0.0.0.0:8100"}).status_listen == "0.0.0.0:8100"
    assert load_settings(environ={"TOLLWAY_STATUS_LISTEN": "OFF"}).status_listen == "off"


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = [line for line in readme.splitlines() if line.startswith("| `")]
    missing = [key for key in SETTINGS if not any(f"`{key}`" in line.split(" | ")[0] for line in table)]
    assert missing == [], f"README's settings table lacks {missing}"
