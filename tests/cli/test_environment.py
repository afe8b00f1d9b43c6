"""TOLLWAY_* variables are settings, as the README says: an unknown one is an error naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.server.nodes import node_env, tollway
from tollway.config import ConfigError, is_setting_variable, load_settings


def test_an_unknown_variable_ends_the_command_in_one_line_naming_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "p", "sqlite")
    result = tollway(settings, "health", env=node_env(settings, TOLLWAY_PROXY_LISSTEN="0.0.0.0:9000"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: unknown setting 'proxy_lissten' from the environment variable TOLLWAY_PROXY_LISSTEN"]


@pytest.mark.parametrize("name", ["TOLLWAY_CONF", "TOLLWAY_PURE_PYTHON", "TOLLWAY_TEST_PG_HOST", "TOLLWAY_TEST_X"])
def test_the_variables_that_are_not_settings_are_let_through(name: str) -> None:
    assert not is_setting_variable(name)
    environ = {name: "1", "TOLLWAY_WORKERS": "3"} if name != "TOLLWAY_CONF" else {"TOLLWAY_WORKERS": "3"}
    assert load_settings(environ=environ).workers == 3


def test_every_other_tollway_variable_is_a_setting() -> None:
    assert is_setting_variable("TOLLWAY_PREFIX") and is_setting_variable("TOLLWAY_TESTS")
    assert not is_setting_variable("KONG_PREFIX")
    with pytest.raises(ConfigError, match="TOLLWAY_TESTS"):
        load_settings(environ={"TOLLWAY_TESTS": "1"})
