"""The redis policy's client and its script calls, against redis-servers of the tests' own: pipelined
replies in order, AUTH (ACL user and requirepass), SELECT, TLS, a refused, a hung and a restarted
server, and a script Redis forgot (SCRIPT FLUSH). Each test runs on asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import hiredis
import pytest
import uvloop

from tests.conftest import free_port
from tests.plugins.redis_server import RedisServer
from tollway.plugins.rate_limiting.redis_client import Address, RedisClient, RedisUnavailable, pack
from tollway.plugins.rate_limiting.redis_policy import RedisPolicy

Run = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    return asyncio.run if request.param == "asyncio" else uvloop.run  # type: ignore[no-any-return]


def address(port: int, **changes: Any) -> Address:
    fields: dict[str, Any] = {"host": "127.0.0.1", "port": port, "database": 0, "username": None, "password": None,
                              "ssl": False, "ssl_verify": False, "server_name": None}
    return Address(**{**fields, **changes})


async def command(client: RedisClient, *args: str | int) -> Any:
    """One command's reply (a hiredis.ReplyError for an error reply), or RedisUnavailable raised."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    client.send(pack(*args), future.set_result)
    reply = await future
    if isinstance(reply, RedisUnavailable):
        raise reply
    return reply


async def take(policy: RedisPolicy, identity: str, ends: list[int]) -> Any:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    policy.take(identity, ends, future.set_result)
    return await future


def test_pipelined_commands_get_their_own_replies_in_order(redis_server: RedisServer, run: Run) -> None:
    async def main() -> list[Any]:
        client = RedisClient(address(redis_server.port), timeout=2.0)
        # all sent before the connection is even made: they wait for it, then go in order
        return await asyncio.gather(*[command(client, "INCR", "n") for _ in range(300)],
                                    command(client, "LPUSH", "n", "x"), command(client, "GET", "n"))
    replies = run(main())
    assert replies[:300] == list(range(1, 301))
    assert isinstance(replies[300], hiredis.ReplyError) and str(replies[300]).startswith("WRONGTYPE")
    assert replies[301] == b"300"  # an error reply is its sender's alone: the connection goes on


def test_an_acl_user_logs_in_and_a_wrong_password_fails_with_redis_message(redis_server: RedisServer,
                                                                                 run: Run) -> None:
    redis_server.cli("ACL", "SETUSER", "tollway", "on", ">s3cret", "~tollway:*", "+@all")

    async def main() -> tuple[Any, Any, str]:
        good = RedisClient(address(redis_server.port, username="tollway", password="s3cret"), timeout=2.0)
        stored = await command(good, "SET", "tollway:k", "v")
        denied = await command(good, "SET", "other:k", "v")  # outside the user's keys: Redis's own error
        bad = RedisClient(address(redis_server.port, username="tollway", password="wrong"), timeout=2.0)
        with pytest.raises(RedisUnavailable) as failed:
            await command(bad, "GET", "tollway:k")
        return stored, denied, str(failed.value)
    stored, denied, failure = run(main())
    assert stored == b"OK"
    assert isinstance(denied, hiredis.ReplyError) and str(denied).startswith("NOPERM")
    assert failure.startswith(f"127.0.0.1:{redis_server.port}: login failed: WRONGPASS")


def test_the_default_user_logs_in_with_requirepass(tmp_path: Path, run: Run) -> None:
    redis = RedisServer(tmp_path, ["--requirepass", "s3cret"])
    try:
        async def main() -> tuple[Any, Any, str]:
            good = await command(RedisClient(address(redis.port, password="s3cret"), 2.0), "PING")
            anonymous = await command(RedisClient(address(redis.port), 2.0), "PING")
            with pytest.raises(RedisUnavailable) as failed:
                await command(RedisClient(address(redis.port, password="wrong"), 2.0), "PING")
            return good, anonymous, str(failed.value)
        good, anonymous, failure = run(main())
        assert good == b"PONG"
        assert isinstance(anonymous, hiredis.ReplyError) and str(anonymous).startswith("NOAUTH")
        assert "login failed: WRONGPASS" in failure
    finally:
        redis.close()


def test_select_puts_the_keys_in_the_configured_database(redis_server: RedisServer, run: Run) -> None:
    run(command(RedisClient(address(redis_server.port, database=3), 2.0), "SET", "where", "three"))
    assert redis_server.cli("-n", "3", "GET", "where") == "three"
    assert redis_server.cli("-n", "0", "EXISTS", "where") == "0"


def test_tls_with_and_without_verification(tmp_path: Path, run: Run) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=redis.test", "-addext", "subjectAltName=DNS:redis.test"],
                   check=True, capture_output=True)
    redis = RedisServer(tmp_path, ["--tls-cert-file", str(cert), "--tls-key-file", str(key),
                                   "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"], tls=True)
    try:
        async def main() -> tuple[Any, str]:
            unverified = RedisClient(address(redis.port, ssl=True), 2.0)
            reply = await command(unverified, "PING")
            # verified against the system's authorities, a self-signed certificate is refused
            verified = RedisClient(address(redis.port, ssl=True, ssl_verify=True, server_name="redis.test"), 2.0)
            with pytest.raises(RedisUnavailable) as refused:
                await command(verified, "PING")
            return reply, str(refused.value)
        reply, refused = run(main())
        assert reply == b"PONG"
        assert "cannot connect" in refused and "CERTIFICATE_VERIFY_FAILED" in refused
    finally:
        redis.close()


def test_a_refused_connection_fails_at_once(run: Run) -> None:
    async def main() -> tuple[float, str]:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable) as failed:
            await command(RedisClient(address(free_port()), timeout=5.0), "PING")
        return time.monotonic() - started, str(failed.value)
    waited, failure = run(main())
    assert waited < 1.0
    assert "cannot connect" in failure


def test_a_hung_server_costs_a_command_its_timeout_and_the_client_recovers(redis_server: RedisServer, run: Run) -> None:
    async def main() -> tuple[float, list[Any], Any]:
        client = RedisClient(address(redis_server.port), timeout=0.3)
        assert await command(client, "INCR", "k") == 1
        redis_server.pause()
        started = time.monotonic()
        hung = await asyncio.gather(*[command(client, "INCR", "k") for _ in range(5)], return_exceptions=True)
        waited = time.monotonic() - started
        redis_server.resume()
        return waited, hung, await command(client, "PING")
    waited, hung, after = run(main())
    assert 0.25 <= waited < 0.3 + 0.5
    assert all(isinstance(reply, RedisUnavailable) and "no reply within 0.3 s" in str(reply) for reply in hung)
    assert after == b"PONG"  # on a new connection


def test_a_restarted_server_is_connected_again(redis_server: RedisServer, run: Run) -> None:
    async def main() -> tuple[Any, Any, Any]:
        client = RedisClient(address(redis_server.port), timeout=1.0)
        first = await command(client, "PING")
        redis_server.stop()
        try:
            await command(client, "PING")
            down: Any = None
        except RedisUnavailable as exc:
            down = exc
        redis_server.start()
        return first, down, await command(client, "PING")
    first, down, again = run(main())
    assert first == b"PONG" and again == b"PONG"
    assert isinstance(down, RedisUnavailable)


def test_a_script_redis_forgot_is_sent_again_with_its_text(redis_server: RedisServer, run: Run) -> None:
    ends = [int(time.time()) + 60, int(time.time()) + 3600]

    async def main() -> list[Any]:
        policy = RedisPolicy.of({"host": "127.0.0.1", "port": redis_server.port}, "scope", ("minute", "hour"), [2, 10])
        answers = [await take(policy, "alice", ends)]
        redis_server.cli("SCRIPT", "FLUSH")
        answers += await asyncio.gather(*[take(policy, "alice", ends) for _ in range(2)])
        answers.append(await take(policy, "alice", ends))  # by its SHA again
        return answers
    assert run(main()) == [(True, [1, 1]), (True, [2, 2]), (False, [2, 2]), (False, [2, 2])]
    assert redis_server.cli("GET", f"tollway:rate-limiting:scope:hour:{ends[1]}:alice") == "2"
    assert int(redis_server.cli("TTL", f"tollway:rate-limiting:scope:minute:{ends[0]}:alice")) in range(55, 62)


def test_calls_of_one_batch_are_decided_in_turn_across_identities_and_windows(redis_server: RedisServer,
                                                                            run: Run) -> None:
    now = int(time.time())

    async def main() -> list[Any]:
        policy = RedisPolicy.of({"host": "127.0.0.1", "port": redis_server.port}, "scope", ("second", "hour"), [2, 3])
        calls = [("alice", [now + 1, now + 3600])] * 3 + [("bob", [now + 1, now + 3600])] \
            + [("alice", [now + 2, now + 3600])] * 2  # alice's next second: her hour has one unit left
        return await asyncio.gather(*[take(policy, who, ends) for who, ends in calls])
    assert run(main()) == [(True, [1, 1]), (True, [2, 2]), (False, [2, 2]), (True, [1, 1]),
                           (True, [1, 3]), (False, [1, 3])]


def test_plugins_configured_alike_share_one_connection_across_configuration_changes(redis_server: RedisServer,
                                                                                      run: Run) -> None:
    ends = [int(time.time()) + 3600]

    async def main() -> list[str]:
        conf = {"host": "127.0.0.1", "port": redis_server.port}
        for scope in ("first", "second", "reloaded"):  # a handler each, as each configuration change makes
            await take(RedisPolicy.of(conf, scope, ("hour",), [10]), "alice", ends)
        return [line for line in redis_server.cli("CLIENT", "LIST").splitlines() if "cmd=client|list" not in line]
    clients = run(main())  # counted while the loop runs (uvloop closes its connections with the loop)
    assert len(clients) == 1 and "cmd=evalsha" in clients[0]


def test_no_password_means_no_auth_as_kong(redis_server: RedisServer, run: Run) -> None:
    async def main() -> list[Any]:
        return [await command(RedisClient(address(redis_server.port, **login), 2.0), "PING")
                for login in ({"password": ""}, {"username": "someone"}, {"username": "someone", "password": ""})]
    assert run(main()) == [b"PONG"] * 3


def test_a_host_that_cannot_be_resolved_fails_each_command_at_once(run: Run) -> None:
    async def main() -> tuple[float, list[str]]:
        client = RedisClient(address(6379, host="a" * 64 + ".example"), timeout=5.0)  # not even a valid name
        started = time.monotonic()
        failures = []
        for _ in range(2):  # the second tries again: the first attempt's failure left nothing stuck
            with pytest.raises(RedisUnavailable) as failed:
                await command(client, "PING")
            failures.append(str(failed.value))
        return time.monotonic() - started, failures
    waited, failures = run(main())
    assert waited < 2.0
    assert all("cannot connect" in failure for failure in failures)


def test_a_sender_that_fails_on_its_answer_does_not_keep_the_others_from_theirs(redis_server: RedisServer,
                                                                                  run: Run) -> None:
    ends = [int(time.time()) + 3600]

    async def main() -> Any:
        policy = RedisPolicy.of({"host": "127.0.0.1", "port": redis_server.port}, "scope", ("hour",), [10])

        def broken(answer: Any) -> None:
            raise RuntimeError("a sender's bug")
        policy.take("alice", ends, broken)  # the same batch as the next call
        return await take(policy, "alice", ends)
    assert run(main()) == (True, [2])
