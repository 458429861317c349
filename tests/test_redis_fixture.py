"""The throw-away Redis that `make test` gives the suite is a real, empty, private server."""

import redis


def test_redis_fixture_is_a_real_private_server(redis_url):
    client = redis.Redis.from_url(redis_url, socket_timeout=1)
    try:
        assert client.dbsize() == 0
        assert client.config_get("save") == {"save": ""}  # never writes a dump
        client.set("probe", b"\x00\xff", ex=5)
        assert client.get("probe") == b"\x00\xff"
        assert 0 < client.ttl("probe") <= 5
    finally:
        client.delete("probe")
        client.close()
