"""Natural micro-batching: concurrent callers share one call of a batch function.

Scoring one row and scoring 64 rows cost a scikit-learn pipeline about the same, and one
database transaction for 64 log rows costs about what one row costs (one commit, one
sync). So the endpoint never scores or commits per request: while one batch is being
processed in a worker thread, new requests queue, and the next batch takes all of them.
No timer is involved, so a lone request is never delayed waiting for company.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Run ``process(items) -> results`` (one result per item, same order) over queued items.

    Callers ``await submit(items)`` and get back the results of their own items. Items
    of several callers go to one ``process`` call, up to ``max_items`` per call. An
    exception in ``process`` fails exactly the callers of that batch.
    """

    def __init__(self, process: Callable[[list[Item]], Sequence[Result]], max_items: int = 256):
        self._process = process
        self._max_items = max_items
        self._queue: list[tuple[list[Item], asyncio.Future]] = []
        self._draining: asyncio.Task | None = None

    async def submit(self, items: list[Item]) -> list[Result]:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((items, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                items = [item for entries, _ in batch for item in entries]
                try:
                    results = await asyncio.to_thread(self._process, items)
                except Exception as exc:  # noqa: BLE001 - handed to the callers of this batch
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for entries, future in batch:
                    if not future.done():  # a caller that gave up (disconnected) is skipped
                        future.set_result(list(results[start : start + len(entries)]))
                    start += len(entries)
        finally:
            self._draining = None

    def _take(self) -> list[tuple[list, asyncio.Future]]:
        """The queued submissions that fit in one call (always at least one)."""
        taken, size = 0, 0
        for entries, _ in self._queue:
            if taken and size + len(entries) > self._max_items:
                break
            taken, size = taken + 1, size + len(entries)
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    async def idle(self) -> None:
        """Wait until everything submitted so far was processed (used at shutdown)."""
        while self._draining is not None:
            await asyncio.shield(self._draining)
