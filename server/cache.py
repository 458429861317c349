"""The quote cache: an in-process LRU with TTL in front of an optional, shared Redis.

A key names the exact model (version and checksum) and every input bit for bit; the option
type is not in it, because one inference prices the call and the put of a (strike, tau)
in a market state together, and both are cached as one value. Redis is a helper, never a
dependency: every call has a timeout of tens of milliseconds and no retries, any error is a
miss, and after a failure a circuit breaker skips Redis for `cooldown` seconds. Values read
from Redis are checked (size, finite) before use.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Sequence

import numpy as np
import redis.asyncio as redis
from cachetools import TTLCache
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from server.quotes import QUOTE, Quote

log = logging.getLogger(__name__)


def quote_key(model_tag: str, contract: Sequence[float]) -> bytes:
    """Key of one market state and contract: model tag + the six numeric inputs (not the type)."""
    return b"pinn:" + model_tag.encode() + b":" + struct.pack("<6d", *contract)


class RedisTier:
    """Redis with hard time limits and a circuit breaker."""

    def __init__(
        self, url: str, ttl: float, timeout: float, cooldown: float, on_event: Callable[[str], None]
    ) -> None:
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._ttl_ms = max(1, int(ttl * 1000))
        self._timeout = timeout
        self._cooldown = cooldown
        self._open_until = 0.0
        self._on_event = on_event
        self._writes: set[asyncio.Task[None]] = set()

    def _available(self) -> bool:
        return time.monotonic() >= self._open_until

    def _failed(self, what: str, error: BaseException) -> None:
        if self._available():
            log.warning(
                "redis %s failed (%r); skipping redis for %.1f s", what, error, self._cooldown
            )
        self._open_until = time.monotonic() + self._cooldown
        self._on_event("error")

    async def get(self, key: bytes) -> Quote | None:
        if not self._available():
            self._on_event("skipped")
            return None
        try:
            value = await asyncio.wait_for(self._client.get(key), self._timeout)
        except (redis.RedisError, OSError, TimeoutError) as error:
            self._failed("get", error)
            return None
        if value is None:
            return None
        if len(value) != QUOTE.size or not np.isfinite(np.frombuffer(value, "<f8")).all():
            log.warning("ignoring a malformed redis value of %d bytes for %r", len(value), key)
            self._on_event("malformed")
            return None
        return value

    def put(self, key: bytes, quote: Quote) -> None:
        """Store in the background; the request never waits for it."""
        if not self._available():
            return
        task = asyncio.get_running_loop().create_task(self._put(key, quote))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _put(self, key: bytes, value: bytes) -> None:
        try:
            await asyncio.wait_for(self._client.set(key, value, px=self._ttl_ms), self._timeout)
        except (redis.RedisError, OSError, TimeoutError) as error:
            self._failed("set", error)

    async def close(self) -> None:
        if self._writes:
            await asyncio.wait(self._writes, timeout=self._timeout)
        await self._client.aclose()


class QuoteCache:
    """Two tiers; `get` says which tier answered ("local", "redis") or None for a miss."""

    def __init__(
        self, size: int, ttl: float, shared: RedisTier | None, on_lookup: Callable[[str, str], None]
    ) -> None:
        self._local: TTLCache[bytes, Quote] = TTLCache(maxsize=size, ttl=ttl)
        self._shared = shared
        self._on_lookup = on_lookup

    async def get(self, key: bytes) -> tuple[Quote | None, str | None]:
        quote = self._local.get(key)
        self._on_lookup("local", "hit" if quote is not None else "miss")
        if quote is not None or self._shared is None:
            return quote, "local" if quote is not None else None
        quote = await self._shared.get(key)
        self._on_lookup("redis", "hit" if quote is not None else "miss")
        if quote is None:
            return None, None
        self._local[key] = quote
        return quote, "redis"

    def put(self, key: bytes, quote: Quote) -> None:
        self._local[key] = quote
        if self._shared is not None:
            self._shared.put(key, quote)

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()
