"""Header rewriting helpers: the per-connection shortcuts give exactly what the general path gives."""

from __future__ import annotations

import pytest

from tollway.proxy import headers as headers_module
from tollway.proxy.headers import HeaderNames, forwarded_blocks, lower_name, upstream_request_head

CLIENT_HEADERS = {
    "plain": [(b"user-agent", b"wrk"), (b"accept", b"*/*"), (b"apikey", b"k")],
    "none": [],
    "a client's X-Forwarded-For": [(b"x-forwarded-for", b"10.0.0.9"), (b"accept", b"*/*")],
    "a client's Via": [(b"via", b"1.0 edge"), (b"accept", b"*/*")],
    "hop-by-hop and proxy-": [(b"connection", b"close"), (b"proxy-authorization", b"x"), (b"te", b"trailers")],
}


@pytest.mark.parametrize("client", list(CLIENT_HEADERS.values()), ids=list(CLIENT_HEADERS))
@pytest.mark.parametrize("prefix", [b"", b"/api"])
def test_the_forwarded_blocks_give_the_head_the_general_path_gives(client, prefix):
    common = dict(client_ip=b"127.0.0.1", real_ip=b"127.0.0.1", forwarded_proto=b"http",
                  forwarded_host=b"gw.example", forwarded_port=b"8000", forwarded_path=b"/api/x",
                  forwarded_prefix=prefix, framing=b"content-length: 2\r\n", upgrade=None,
                  hop_tokens=frozenset())
    general = upstream_request_head(b"POST", b"/x", b"up.example", client, **common)
    shortcut = upstream_request_head(b"POST", b"/x", b"up.example", client, **common,
                                     blocks=forwarded_blocks(b"127.0.0.1", b"http", b"8000"))
    assert shortcut == general
    assert b"\r\nx-forwarded-host: gw.example\r\nx-forwarded-port: 8000\r\nx-forwarded-path: /api/x\r\n" in general


def test_header_names_by_position_follow_whatever_a_position_holds():
    names = HeaderNames()
    assert [names.lower(i, n) for i, n in enumerate([b"Host", b"User-Agent", b"X-A"])] == \
        [b"host", b"user-agent", b"x-a"]
    # The same names again, then others (and other cases) at the same positions, then more of them.
    assert [names.lower(i, n) for i, n in enumerate([b"Host", b"User-Agent", b"X-A"])] == \
        [b"host", b"user-agent", b"x-a"]
    assert [names.lower(i, n) for i, n in enumerate([b"HOST", b"Content-Length", b"x-a", b"X-B"])] == \
        [b"host", b"content-length", b"x-a", b"x-b"]
    assert names.lower(1, b"User-Agent") == b"user-agent"
    assert names.lower(40, b"Late") == b"late"  # past what is remembered, and after a gap


def test_lowered_names_are_shared_and_the_cache_is_bounded():
    assert lower_name(b"X-Shared-Name") is lower_name(b"x-shared-name") is lower_name(b"X-SHARED-NAME")
    long_name = b"X-" + b"a" * 100
    assert lower_name(long_name) == long_name.lower()
    assert long_name not in headers_module._LOWERED  # names over 64 bytes are not kept
    for i in range(headers_module._LOWERED_MAX + 10):
        assert lower_name(b"X-Made-Up-%d" % i) == b"x-made-up-%d" % i
    assert len(headers_module._LOWERED) <= headers_module._LOWERED_MAX
