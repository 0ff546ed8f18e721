"""Dynamic micro-batching: requests that arrive close together share one encoder pass and one top-k.

A request waits at most ``max_wait_ms`` for others to join it, and a batch holds at most ``max_batch``;
``max_batch=1`` serves every request alone. One worker thread runs the batches, so the model never runs two
at once (two would only split the same cores) and requests keep queueing, and so batching, while it works.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class Batched(Generic[Result]):
    result: Result
    context: Any  # what the batch ran with (the model version), the same for every request of the batch


class MicroBatcher(Generic[Item, Result]):
    """Groups ``submit``ted items into calls of ``run(items, context) -> results`` (one result per item).

    ``context()`` is read once per batch, when it starts: a model swapped in meanwhile serves the next batch,
    and every answer of a batch comes from the same model.
    """

    def __init__(self, run: Callable[[Sequence[Item], Any], Sequence[Result]], context: Callable[[], Any],
                 max_batch: int = 32, max_wait_ms: float = 2.0, on_batch: Callable[[int], None] | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.run, self.context = run, context
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Batched[Result]]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqrec-model")

    def start(self) -> None:
        """Starts the worker on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=True)

    async def submit(self, item: Item) -> Batched[Result]:
        """The item's result, computed in some batch; an exception of the batch is raised here."""
        assert self._queue is not None, "MicroBatcher.start() first"
        future: asyncio.Future[Batched[Result]] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _work(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                # Whatever is already queued joins at once; then wait for more until the deadline.
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            live = [(item, f) for item, f in batch if not f.done()]  # a client that gave up is not computed
            if not live:
                continue
            context = self.context()
            try:
                results = await loop.run_in_executor(self._pool, self.run, [item for item, _ in live], context)
            except Exception as e:  # the batch failed: every request of it gets the error
                for _, f in live:
                    if not f.done():
                        f.set_exception(e)
                continue
            if self.on_batch is not None:
                self.on_batch(len(live))
            for (_, f), r in zip(live, results):
                if not f.done():
                    f.set_result(Batched(r, context))
