"""portal_listen: off by default, HOST:PORT when set, checked as admin_listen is."""

from __future__ import annotations

import pytest

from tollway.config import load_settings
from tollway.errors import ConfigError


def test_the_portal_is_off_unless_portal_listen_names_an_address() -> None:
    assert load_settings(environ={}).portal_listen == "off"
    assert load_settings(environ={"TOLLWAY_PORTAL_LISTEN": "OFF"}).portal_listen == "off"
    assert load_settings(environ={"TOLLWAY_PORTAL_LISTEN": " 0.0.0.0:8002 "}).portal_listen == "0.0.0.0:8002"


def test_a_bad_portal_listen_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match="portal_listen"):
        load_settings(environ={"TOLLWAY_PORTAL_LISTEN": "8002"})
