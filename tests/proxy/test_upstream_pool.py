"""UpstreamPool: idle connections kept per PoolKey, without sockets."""

from __future__ import annotations

import asyncio

from tollway.proxy.upstream import PoolKey, UpstreamConnection, UpstreamPool


class Transport(asyncio.Transport):
    """Records the reading state the connection asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.resumed = 0
        self.paused = 0
        self.closed = False

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.resumed += 1

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def connection(pool: UpstreamPool, key: PoolKey) -> tuple[UpstreamConnection, Transport]:
    conn = UpstreamConnection(pool, key)
    transport = Transport()
    conn.connection_made(transport)
    return conn, transport


def test_idle_connections_are_kept_per_key_whichever_key_object_asks() -> None:
    async def scenario() -> None:
        pool = UpstreamPool(asyncio.get_running_loop(), 4, 60)
        a, b = PoolKey("http", "a.test", 80, True), PoolKey("http", "b.test", 80, True)
        conns = {}
        for key in (a, b, a, b):  # the pool's last key changes at every step
            conn, _ = connection(pool, key)
            conns.setdefault(key.host, []).append(conn)
            pool.release(conn)
        assert pool.idle_count() == 4
        same_as_a = PoolKey("http", "a.test", 80, True)  # equal, another object (a new configuration's)
        assert pool.take(b) is conns["b.test"][1]
        assert pool.take(same_as_a) is conns["a.test"][1]
        assert pool.take(a) is conns["a.test"][0]
        assert pool.take(a) is None
        assert pool.take(PoolKey("http", "b.test", 80, True)) is conns["b.test"][0]
        assert pool.take(b) is None
        assert pool.take(PoolKey("http", "c.test", 80, True)) is None
        pool.close()

    asyncio.run(scenario())


def test_a_released_connection_reads_again_only_if_its_reading_was_paused() -> None:
    async def scenario() -> None:
        pool = UpstreamPool(asyncio.get_running_loop(), 4, 60)
        key = PoolKey("http", "a.test", 80, True)
        conn, transport = connection(pool, key)
        pool.release(conn)
        assert transport.resumed == 0
        assert pool.take(key) is conn
        conn.pause_reading()  # the client could not keep up
        conn.pause_reading()
        assert transport.paused == 2
        pool.release(conn)
        assert transport.resumed == 1
        assert pool.take(key) is conn
        pool.release(conn)
        assert transport.resumed == 1
        pool.close()

    asyncio.run(scenario())
