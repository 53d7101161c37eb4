"""Micro-batching: concurrent callers share one call and each gets its own results."""

import asyncio
import threading

from ml_platform.serving.batching import Batcher


def test_concurrent_callers_share_calls_and_get_their_own_results():
    calls = []
    gate = threading.Event()

    def double(items):
        calls.append(list(items))
        gate.wait(5)  # the first call is slow, so the others queue behind it
        return [2 * i for i in items]

    async def main():
        batcher = Batcher(double, max_items=100)
        first = asyncio.create_task(batcher.submit([1]))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(batcher.submit([10 * k, 10 * k + 1])) for k in range(1, 6)]
        await asyncio.sleep(0.05)
        gate.set()
        return await first, await asyncio.gather(*rest)

    first, rest = asyncio.run(main())
    assert first == [2]
    assert rest == [[20 * k, 20 * k + 2] for k in range(1, 6)]
    assert calls == [[1], [10, 11, 20, 21, 30, 31, 40, 41, 50, 51]]  # five queued callers, one call


def test_batches_respect_the_size_bound_without_splitting_a_caller():
    sizes = []

    def identity(items):
        sizes.append(len(items))
        return items

    async def main():
        batcher = Batcher(identity, max_items=5)
        return await asyncio.gather(*(batcher.submit([k, k, k]) for k in range(6)))

    results = asyncio.run(main())
    assert results == [[k, k, k] for k in range(6)]
    assert max(sizes) <= 5 and sum(sizes) == 18  # callers of 3 items: at most one per call of 5


def test_a_failing_batch_fails_its_callers_only():
    def fail_on_negative(items):
        if any(i < 0 for i in items):
            raise ValueError("negative")
        return items

    async def main():
        batcher = Batcher(fail_on_negative, max_items=1)
        bad, good = await asyncio.gather(batcher.submit([-1]), batcher.submit([1]), return_exceptions=True)
        return bad, good

    bad, good = asyncio.run(main())
    assert isinstance(bad, ValueError)
    assert good == [1]
