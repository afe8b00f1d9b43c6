"""key-auth as Kong's, plugin precedence, and the meter/log phases."""

from __future__ import annotations

import time

from tests.proxy.conftest import consumer, credential, plugin, request, route, service, snapshot


def setup_key_auth(proxy, echo_port, config=None, extra_consumers=()):
    svc = service(echo_port)
    rte = route(svc, ["/mock"], name="mock")
    alice = consumer("alice", custom_id="cust-1")
    cred = credential(alice, "poppy-secret")
    proxy.apply(snapshot([svc], [rte], consumers=[alice, *extra_consumers], credentials=[cred],
                         plugins=[plugin("key-auth", config, route=rte), plugin("billable")]))
    return alice, cred


def test_missing_key_answers_401_with_kong_message(proxy, echo_upstream):
    setup_key_auth(proxy, echo_upstream)
    resp = request(proxy.port, "GET", "/mock")
    assert resp.status == 401
    assert resp.json() == {"message": "No API key found in request"}
    assert resp.headers["www-authenticate"] == 'Key realm="tollway"'


def test_wrong_key_answers_401_invalid_credentials(proxy, echo_upstream):
    setup_key_auth(proxy, echo_upstream)
    resp = request(proxy.port, "GET", "/mock", headers={"apikey": "nope"})
    assert resp.status == 401
    assert resp.json() == {"message": "Invalid authentication credentials"}


def test_key_in_header_or_query_authenticates_and_sets_consumer_headers(proxy, echo_upstream):
    alice, cred = setup_key_auth(proxy, echo_upstream)
    for kwargs in ({"headers": {"ApiKey": "poppy-secret"}}, {"path": "/mock?apikey=poppy-secret"}):
        resp = request(proxy.port, "GET", kwargs.get("path", "/mock"), headers=kwargs.get("headers"))
        assert resp.status == 200
        headers = resp.json()["headers"]
        assert headers["x-consumer-id"] == alice["id"]
        assert headers["x-consumer-username"] == "alice"
        assert headers["x-consumer-custom-id"] == "cust-1"
        assert headers["x-credential-identifier"] == cred["id"]
        assert "x-anonymous-consumer" not in headers


def test_client_identity_headers_are_replaced_and_a_removed_key_stops_working(proxy, echo_upstream):
    alice, cred = setup_key_auth(proxy, echo_upstream)
    spoofed = {"apikey": "poppy-secret", "X-Consumer-ID": "someone-else", "X-Anonymous-Consumer": "true",
               "X-Credential-Identifier": "forged"}
    for _ in range(2):  # the second call finds the key among those already seen
        headers = request(proxy.port, "GET", "/mock", headers=spoofed).json()["headers"]
        assert headers["x-consumer-id"] == alice["id"]
        assert headers["x-credential-identifier"] == cred["id"]
        assert "x-anonymous-consumer" not in headers
    svc = service(echo_upstream)
    rte = route(svc, ["/mock"], name="mock")
    proxy.apply(snapshot([svc], [rte], consumers=[alice], plugins=[plugin("key-auth", route=rte)], version=2))
    resp = request(proxy.port, "GET", "/mock", headers={"apikey": "poppy-secret"})
    assert resp.status == 401
    assert resp.json() == {"message": "Invalid authentication credentials"}


def test_identity_headers_cannot_be_spoofed_or_stripped_by_the_client(proxy, echo_upstream):
    alice, cred = setup_key_auth(proxy, echo_upstream)
    headers = request(proxy.port, "GET", "/mock", headers={
        "apikey": "poppy-secret", "X_Consumer_ID": "victim", "X_Anonymous_Consumer": "true",
        "Connection": "keep-alive, X-Consumer-ID, X-Credential-Identifier"}).json()["headers"]
    assert headers["x-consumer-id"] == alice["id"]
    assert headers["x-credential-identifier"] == cred["id"]
    assert not any("_" in name for name in headers)


def test_consumer_fields_with_control_or_non_latin_characters_stay_one_header(proxy, echo_upstream):
    svc = service(echo_upstream)
    rte = route(svc, ["/mock"], name="mock")
    odd = consumer("evil\r\nX-Injected: yes", custom_id="caf\u00e9 \u4e2d")
    proxy.apply(snapshot([svc], [rte], consumers=[odd], credentials=[credential(odd, "odd-key")],
                         plugins=[plugin("key-auth", route=rte)]))
    resp = request(proxy.port, "GET", "/mock", headers={"apikey": "odd-key"})
    assert resp.status == 200
    headers = resp.json()["headers"]
    assert "x-injected" not in headers
    assert headers["x-consumer-username"] == "evil%0D%0AX-Injected: yes"
    assert headers["x-consumer-custom-id"].encode("latin-1").decode("utf-8") == "caf\u00e9 \u4e2d"


def test_hide_credentials_strips_the_key_from_header_and_query(proxy, echo_upstream):
    setup_key_auth(proxy, echo_upstream, {"hide_credentials": True})
    echo = request(proxy.port, "GET", "/mock?apikey=poppy-secret&keep=1").json()
    assert echo["query"] == "keep=1"
    echo = request(proxy.port, "GET", "/mock", headers={"apikey": "poppy-secret"}).json()
    assert "apikey" not in echo["headers"]


def test_key_names_and_key_locations_are_configurable(proxy, echo_upstream):
    setup_key_auth(proxy, echo_upstream, {"key_names": ["x-key"], "key_in_query": False})
    assert request(proxy.port, "GET", "/mock", headers={"x-key": "poppy-secret"}).status == 200
    assert request(proxy.port, "GET", "/mock?x-key=poppy-secret").status == 401


def test_key_names_match_request_headers_whatever_their_case(proxy, echo_upstream):
    setup_key_auth(proxy, echo_upstream, {"key_names": ["X-API-Key", "other"], "hide_credentials": True})
    for name in ("x-api-key", "X-API-KEY", "Other"):
        echo = request(proxy.port, "GET", "/mock", headers={name: "poppy-secret"}).json()
        assert echo["headers"]["x-consumer-username"] == "alice", name
        assert name.lower() not in echo["headers"]
    assert request(proxy.port, "GET", "/mock", headers={"x-api-keys": "poppy-secret"}).status == 401


def test_anonymous_consumer_is_used_without_a_key(proxy, echo_upstream):
    guest = consumer("guest")
    setup_key_auth(proxy, echo_upstream, {"anonymous": "guest"}, extra_consumers=[guest])
    headers = request(proxy.port, "GET", "/mock").json()["headers"]
    assert headers["x-consumer-username"] == "guest"
    assert headers["x-anonymous-consumer"] == "true"
    assert "x-credential-identifier" not in headers


def test_preflight_skips_auth_when_run_on_preflight_is_false(proxy, echo_upstream):
    setup_key_auth(proxy, echo_upstream, {"run_on_preflight": False})
    preflight = request(proxy.port, "OPTIONS", "/mock")
    assert preflight.status == 200 and preflight.json()["method"] == "OPTIONS"  # the echo upstream's answer
    assert request(proxy.port, "GET", "/mock").status == 401


def test_meter_runs_once_per_request_including_plugin_replies(proxy, echo_upstream, recorder):
    setup_key_auth(proxy, echo_upstream)
    ok = request(proxy.port, "GET", "/mock", headers={"apikey": "poppy-secret"})
    denied = request(proxy.port, "GET", "/mock")
    request(proxy.port, "GET", "/unrouted")
    time.sleep(0.1)
    assert [m["status"] for m in recorder.metered] == [200, 401]
    assert recorder.metered[0]["consumer"] == "alice"
    assert recorder.metered[1]["consumer"] is None
    head_len = len("HTTP/1.1 200 OK\r\n") + sum(len(k) + len(v) + 4 for k, v in ok.header_list) + 2
    assert recorder.metered[0]["response_bytes"] == head_len + len(ok.body)
    assert recorder.metered[1]["response_bytes"] > len(denied.body)
    assert recorder.metered[0]["request_bytes"] > len("GET /mock HTTP/1.1\r\n")
    assert [entry["status"] for entry in recorder.logged] == [200, 401]


def test_plugin_precedence_follows_kong(proxy, echo_upstream, recorder, monkeypatch):
    from tollway.plugins.base import Handler
    from tollway.proxy import chain as chain_module

    class Tag(Handler):
        PRIORITY = 10

        def access(self, call):
            call.set_header("X-Tag", self.conf["tag"])

    monkeypatch.setitem(chain_module._CLASSES, "billable", Tag)
    svc = service(echo_upstream)
    other = service(echo_upstream)
    r1, r2, r3 = route(svc, ["/r1"]), route(svc, ["/r2"]), route(other, ["/r3"])
    alice, bob = consumer("alice"), consumer("bob")
    plugins = [
        plugin("key-auth", {}),
        plugin("billable", {"tag": "global"}),
        plugin("billable", {"tag": "service"}, service=svc),
        plugin("billable", {"tag": "route"}, route=r1),
        plugin("billable", {"tag": "consumer"}, consumer=alice),
        plugin("billable", {"tag": "route+consumer"}, route=r1, consumer=bob),
        {**plugin("billable", {"tag": "route+service"}, route=r2), "service": {"id": svc["id"]}},
    ]
    proxy.apply(snapshot([svc, other], [r1, r2, r3], plugins=plugins, consumers=[alice, bob],
                         credentials=[credential(alice, "a"), credential(bob, "b")]))

    def tag(path, key):
        return request(proxy.port, "GET", path, headers={"apikey": key}).json()["headers"]["x-tag"]

    assert tag("/r1", "a") == "consumer"         # consumer > route
    assert tag("/r1", "b") == "route+consumer"   # route+consumer > consumer, route
    assert tag("/r2", "a") == "route+service"    # route+service > consumer
    assert tag("/r3", "a") == "consumer"         # consumer > global
    assert tag("/r3", "b") == "global"
    svc_only = route(svc, ["/r4"])
    proxy.apply(snapshot([svc, other], [svc_only], plugins=plugins[:3], consumers=[alice],
                         credentials=[credential(alice, "a")]))
    assert tag("/r4", "a") == "service"          # service > global
