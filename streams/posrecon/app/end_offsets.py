"""Fresh end offsets of input partitions, asked for without blocking the worker loop.

The merge may pass an empty input only once a look at the broker *after* the task blocked shows nothing
left to read there (see ``app/merge.py``). The consumer's own ``get_watermark_offsets(cached=False)`` blocks
for a fetch long-poll (about 50 ms a call, measured), which stalls the whole loop; so the worker asks an
admin client instead: one ListOffsets request (``read_committed``, latest) for every partition that needs a
look, answered on librdkafka's threads while the loop goes on. The loop reads the answers on later turns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

Key = tuple[str, int]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class EndOffsets:
    """End offsets (what a ``read_committed`` reader can reach), each with the wall time it was asked for.

    A request that has not come back ``request_timeout_s`` + 2 s after it was sent is given up and asked
    again; after three such, the admin client is replaced (``make_admin``): after a broker restart an admin
    client's requests were seen never to complete."""

    def __init__(self, make_admin: Callable[[], Any], request_timeout_s: float = 5.0) -> None:
        self.make_admin = make_admin
        self.admin: AdminClient = make_admin()
        self.request_timeout_s = request_timeout_s
        self.lost = 0  # requests given up since the admin client was (re)made
        self.replaced = 0
        self.known: dict[Key, tuple[int, int]] = {}  # partition -> (end offset, asked at ms)
        self._inflight: dict[Key, tuple[Future[Any], int]] = {}
        self._wanted: set[Key] = set()
        self.requests = 0

    def want(self, key: Key) -> None:
        """Ask for this partition's end offset with the next request."""
        if key not in self._inflight:
            self._wanted.add(key)

    def answer(self, key: Key, asked_after: int) -> int | None:
        """The end offset, if one asked for at or after ``asked_after`` (wall ms) has arrived."""
        known = self.known.get(key)
        if known is not None and known[1] >= asked_after:
            return known[0]
        self.want(key)
        return None

    def poll(self) -> None:
        """Collect finished answers, then send one request for everything wanted (once per loop turn)."""
        overdue = _wall_ms() - int(self.request_timeout_s * 1000) - 2000
        for key, (future, asked) in list(self._inflight.items()):
            if not future.done():
                if asked < overdue:
                    del self._inflight[key]
                    self._wanted.add(key)
                    self.lost += 1
                continue
            del self._inflight[key]
            try:
                self.known[key] = (future.result().offset, asked)
            except KafkaException:
                self._wanted.add(key)  # ask again with the next request
        if self.lost >= 3:
            self.admin = self.make_admin()
            self.replaced += 1
            self.lost = 0
            self._wanted.update(self._inflight)
            self._inflight.clear()
        wanted = [k for k in self._wanted if k not in self._inflight]
        self._wanted.clear()
        if not wanted:
            return
        asked = _wall_ms()
        try:
            futures = self.admin.list_offsets(
                {TopicPartition(t, p): OffsetSpec.latest() for t, p in wanted},  # type: ignore[no-untyped-call]
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=self.request_timeout_s,
            )
        except (KafkaException, ValueError):
            self._wanted.update(wanted)
            return
        self.requests += 1
        for tp, future in futures.items():
            self._inflight[(tp.topic, tp.partition)] = (future, asked)

    def forget(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self.known.pop(key, None)
            self._inflight.pop(key, None)
            self._wanted.discard(key)
