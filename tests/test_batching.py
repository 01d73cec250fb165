"""DynamicBatcher: FIFO order, batching under load, no wait when idle, bounds, faults, a lost
device, draining, and the two-deep pipeline of a model call that returns a Pending."""

import asyncio
import threading
import time

import pytest
import torch
from torch import Tensor

from app.engine.batching import BatchStats, DeviceLost, DynamicBatcher, ModelThread
from app.failures import Failure, ServiceError


class Recorder:
    """A model stand-in that doubles its input and records each call's batch size."""

    def __init__(self, delay_s: float = 0.0, fail_calls: set[int] | None = None) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.delay_s, self.fail_calls = delay_s, fail_calls or set()

    def __call__(self, x: Tensor) -> Tensor:
        self.sizes.append(int(x.shape[0]))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        if len(self.sizes) in self.fail_calls:
            raise RuntimeError("boom")
        return x * 2


def _batcher(fn: Recorder, **kw: object) -> DynamicBatcher:
    args: dict[str, object] = dict(name="t", max_batch_size=8, max_delay_s=0.01, max_queue=64)
    args.update(kw)
    b = DynamicBatcher(fn, **args)  # type: ignore[arg-type]
    b.start()
    return b


def _x(n: int, start: float = 0) -> Tensor:
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1)


async def test_rows_come_back_in_order_and_batched_under_load() -> None:
    fn = Recorder(delay_s=0.005)
    b = _batcher(fn)
    outs = await asyncio.gather(*(b.enqueue(_x(1, i)) for i in range(40)))
    assert [float(o[0, 0]) for o in outs] == [2.0 * i for i in range(40)]
    assert max(fn.sizes) > 1 and sum(fn.sizes) == 40
    assert all(s <= 8 for s in fn.sizes)
    assert fn.threads == {next(iter(fn.threads))} and "model-t" in next(iter(fn.threads))
    await b.stop()


async def test_idle_model_runs_at_once() -> None:
    b = _batcher(Recorder(), max_delay_s=0.5)
    for _ in range(3):  # the first request, and each one after the model went idle again
        started = time.perf_counter()
        await b.enqueue(_x(1))
        assert time.perf_counter() - started < 0.25  # did not wait for the 0.5 s delay
    await b.stop()


async def test_busy_model_waits_to_fill_the_batch() -> None:
    fn = Recorder(delay_s=0.05)
    b = _batcher(fn, max_delay_s=0.2)
    first = b.enqueue(_x(1))
    await asyncio.sleep(0.01)  # the model is now busy with the first image
    rest = [b.enqueue(_x(1, i)) for i in range(3)]
    await asyncio.sleep(0.06)  # the first batch is done; 3 queued, the batch waits for more
    late = [b.enqueue(_x(1, i)) for i in range(3)]
    await asyncio.gather(first, *rest, *late)
    assert fn.sizes == [1, 6]
    await b.stop()


async def test_big_requests_are_split_and_reassembled() -> None:
    fn = Recorder()
    b = _batcher(fn, max_batch_size=4)
    out = await b.enqueue(_x(10))
    assert torch.equal(out, _x(10) * 2)
    assert fn.sizes == [4, 4, 2]
    await b.stop()


async def test_queue_is_first_in_first_out_under_load() -> None:
    # The model is busy with the first request while 30 more queue up, of 1 to 3 images each;
    # every batch must take rows in arrival order, splitting a request across two batches
    # rather than letting a later one overtake it.
    seen: list[float] = []

    def record(x: Tensor) -> Tensor:
        time.sleep(0.002)
        seen.extend(x[:, 0].tolist())
        return x * 2

    b = _batcher(record, max_batch_size=5, max_delay_s=0.05, max_queue=200)  # type: ignore[arg-type]
    sizes = [1 + (i * 7) % 3 for i in range(31)]
    starts = [sum(sizes[:i]) for i in range(31)]
    tasks = []
    for n, start in zip(sizes, starts, strict=True):
        tasks.append(b.enqueue(_x(n, start)))
        await asyncio.sleep(0)  # each request is queued before the next one arrives
    outs = await asyncio.gather(*tasks)
    assert seen == [float(i) for i in range(sum(sizes))]
    for out, n, start in zip(outs, sizes, starts, strict=True):
        assert torch.equal(out, _x(n, start) * 2)
    await b.stop()


class Deferred:
    """A model call that launches now and finishes later, like a CUDA batch."""

    def __init__(self) -> None:
        self.launched: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def __call__(self, x: Tensor) -> "Deferred.Pending":
        with self.lock:
            self.launched.append(int(x.shape[0]))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return Deferred.Pending(self, x)

    class Pending:
        def __init__(self, owner: "Deferred", x: Tensor) -> None:
            self.owner, self.x = owner, x

        def wait(self) -> Tensor:
            time.sleep(0.02)
            with self.owner.lock:
                self.owner.in_flight -= 1
            return self.x * 2


async def test_pending_batches_overlap_two_deep_and_keep_order() -> None:
    fn = Deferred()
    b = _batcher(fn, max_batch_size=2, depth=2)  # type: ignore[arg-type]
    outs = await asyncio.gather(*(b.enqueue(_x(1, i)) for i in range(12)))
    assert [float(o[0, 0]) for o in outs] == [2.0 * i for i in range(12)]
    assert fn.max_in_flight == 2  # the next batch launched while one was being waited for
    await b.stop()


class Chained:
    """A model call whose batch k finishes only once batch k+1 has been launched (or after
    ``patience_s``): a pipeline that waits for both batches in flight before launching the next
    one stalls on every batch."""

    def __init__(self, batches: int, patience_s: float = 3.0) -> None:
        self.launched = [threading.Event() for _ in range(batches + 1)]
        self.launched[batches].set()  # nothing follows the last batch
        self.count, self.stalled, self.patience_s = 0, 0, patience_s

    def __call__(self, x: Tensor) -> "Chained.Pending":
        k, self.count = self.count, self.count + 1
        self.launched[k].set()
        return Chained.Pending(self, k, x)

    class Pending:
        def __init__(self, owner: "Chained", k: int, x: Tensor) -> None:
            self.owner, self.k, self.x = owner, k, x

        def wait(self) -> Tensor:
            if not self.owner.launched[self.k + 1].wait(self.owner.patience_s):
                self.owner.stalled += 1
            return self.x * 2


async def test_the_next_batch_launches_as_soon_as_one_of_two_in_flight_finishes() -> None:
    fn = Chained(batches=8)
    b = _batcher(fn, max_batch_size=1, depth=2)  # type: ignore[arg-type]
    outs = await asyncio.gather(*(b.enqueue(_x(1, i)) for i in range(8)))
    assert [float(o[0, 0]) for o in outs] == [2.0 * i for i in range(8)]
    assert fn.count == 8 and fn.stalled == 0  # batch k+2 went in before batch k+1 was done
    await b.stop()


class Gate:
    """A model call that blocks until the gate opens: queued work that cannot drain alone."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()

    def __call__(self, x: Tensor) -> Tensor:
        self.entered.set()
        self.open.wait(10)
        return x * 2


async def test_batchers_sharing_a_thread_stopped_together_answer_everything() -> None:
    thread = ModelThread("shared")
    quick, gate = Recorder(), Gate()
    a = _batcher(quick, thread=thread, max_batch_size=1)
    b = _batcher(gate, thread=thread, max_batch_size=1)  # type: ignore[arg-type]
    await a.enqueue(_x(1))  # a is done: nothing queued, nothing running
    accepted = [b.enqueue(_x(1, i)) for i in range(9)]
    await asyncio.to_thread(gate.entered.wait, 10)  # b's first batch holds the thread
    threading.Timer(0.2, gate.open.set).start()  # not from the loop: a wrong stop blocks it
    async with asyncio.timeout(20):  # a's stop must not end the thread b still needs
        await asyncio.gather(a.stop(), b.stop())
        outs = await asyncio.gather(*accepted)
    assert [float(o[0, 0]) for o in outs] == [2.0 * i for i in range(9)]
    thread.stop()


async def test_a_lost_device_fails_the_batch_and_the_queue_and_refuses_new_work() -> None:
    gate, lost = Gate(), []

    def model(x: Tensor) -> Tensor:
        gate(x)
        raise DeviceLost("cuda:0 can run nothing more: CUDA error: an illegal memory access")

    b = _batcher(model, max_batch_size=2, on_lost=lost.append)  # type: ignore[arg-type]
    running = b.enqueue(_x(2))
    await asyncio.to_thread(gate.entered.wait, 10)
    queued = [b.enqueue(_x(1, i)) for i in range(3)]
    gate.open.set()
    with pytest.raises(DeviceLost):
        await running
    for future in queued:  # never run: a retry elsewhere (another replica, a restart) can work
        with pytest.raises(ServiceError) as refused:
            await future
        assert refused.value.failure is Failure.SHUTTING_DOWN
    assert len(lost) == 1 and b.lost is lost[0] and b.queued_images == 0
    with pytest.raises(ServiceError) as refused:
        b.enqueue(_x(1))
    assert refused.value.failure is Failure.SHUTTING_DOWN
    async with asyncio.timeout(10):
        await b.stop()


async def test_a_device_lost_while_waiting_for_a_pending_batch_is_lost_too() -> None:
    lost: list[DeviceLost] = []

    class Failing:
        def wait(self) -> Tensor:
            raise DeviceLost("cuda:0 can run nothing more: CUDA error: device-side assert")

    b = _batcher(lambda x: Failing(), depth=2, on_lost=lost.append)  # type: ignore[arg-type]
    with pytest.raises(DeviceLost):
        await b.enqueue(_x(2))
    assert len(lost) == 1
    with pytest.raises(ServiceError):
        b.enqueue(_x(1))
    await b.stop()


async def test_a_limit_holds_later_batches_to_it() -> None:
    fn = Recorder()
    b = _batcher(fn, max_batch_size=8)
    b.limit(3)
    assert torch.equal(await b.enqueue(_x(8)), _x(8) * 2)
    assert fn.sizes == [3, 3, 2]
    await b.stop()


async def test_a_limit_may_grow_back_up_to_the_size_the_batcher_was_made_with() -> None:
    fn = Recorder()
    b = _batcher(fn, max_batch_size=8)
    b.limit(2)
    b.limit(4)  # the predictor found room again
    assert torch.equal(await b.enqueue(_x(8)), _x(8) * 2)
    b.limit(100)
    assert b.max_batch_size == 8
    assert torch.equal(await b.enqueue(_x(8)), _x(8) * 2)
    assert fn.sizes == [4, 4, 8]
    await b.stop()


class _Hung:
    """A batch a hung GPU never finishes: ``wait`` blocks until the test lets it go."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def wait(self) -> Tensor:
        self.release.wait()
        raise RuntimeError("released at the end of the test")


@pytest.mark.timeout(30)  # a stop that joins a stuck thread would hang: fail instead
@pytest.mark.parametrize("where", ["wait", "launch"])
async def test_the_watchdog_takes_a_hung_batch_for_a_lost_device(where: str) -> None:
    release = threading.Event()
    lost: list[DeviceLost] = []

    def hang(x: Tensor) -> _Hung:
        if where == "launch":  # the model thread itself is stuck (a full ring's synchronize)
            release.wait()
        return _Hung(release)

    b = _batcher(hang, depth=2, deadline_s=0.3, on_lost=lost.append)  # type: ignore[arg-type]
    try:
        started = time.perf_counter()
        first, second = b.enqueue(_x(2)), b.enqueue(_x(1))
        with pytest.raises(DeviceLost, match="watchdog"):
            await asyncio.wait_for(first, 5)
        assert 0.3 <= time.perf_counter() - started < 2
        with pytest.raises((DeviceLost, ServiceError)):
            await asyncio.wait_for(second, 5)
        assert len(lost) == 1 and b.lost is lost[0]
        with pytest.raises(ServiceError):  # refused: the process is to be replaced
            b.enqueue(_x(1))
        await asyncio.wait_for(b.stop(), 2)  # does not wait for the stuck threads
    finally:
        release.set()


async def test_without_a_deadline_a_slow_batch_is_only_slow() -> None:
    b = _batcher(Recorder(delay_s=0.3), deadline_s=None)
    assert torch.equal(await b.enqueue(_x(2)), _x(2) * 2)
    assert b.lost is None
    await b.stop()
    with pytest.raises(ValueError, match="deadline_s"):
        DynamicBatcher(Recorder(), name="t", max_batch_size=1, max_delay_s=0, max_queue=1,
                       deadline_s=0)  # fmt: skip


async def test_batchers_can_share_one_model_thread() -> None:
    thread = ModelThread("shared")
    fa, fb = Recorder(), Recorder()
    a, b = _batcher(fa, thread=thread), _batcher(fb, thread=thread)
    await asyncio.gather(a.enqueue(_x(2)), b.enqueue(_x(3)))
    assert fa.threads == fb.threads == {"shared"}
    await a.stop()
    await b.stop()
    thread.stop()


async def test_full_queue_refuses_then_recovers() -> None:
    fn = Recorder(delay_s=0.05)
    b = _batcher(fn, max_queue=4, max_batch_size=2)
    tasks = [b.enqueue(_x(1)) for _ in range(4)]
    await asyncio.sleep(0)
    with pytest.raises(ServiceError, match="queue is full") as refused:
        await b.enqueue(_x(3))
    assert refused.value.failure is Failure.QUEUE_FULL
    await asyncio.gather(*tasks)
    assert b.queued_images == 0
    assert torch.equal(await b.enqueue(_x(3)), _x(3) * 2)
    await b.stop()


async def test_a_failing_batch_fails_only_its_requests(caplog: pytest.LogCaptureFixture) -> None:
    fn = Recorder(fail_calls={1})
    b = _batcher(fn)
    with pytest.raises(RuntimeError, match="boom"):
        await b.enqueue(_x(2))
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == "inference failed for a batch of 2 on t"
    assert record.exc_info is not None and "boom" in str(record.exc_info[1])  # the traceback
    assert torch.equal(await b.enqueue(_x(2)), _x(2) * 2)
    await b.stop()


async def test_wrong_output_count_is_an_error() -> None:
    b = DynamicBatcher(lambda x: x[:1], name="t", max_batch_size=4, max_delay_s=0, max_queue=8)
    b.start()
    with pytest.raises(RuntimeError, match="returned 1 rows for 3 inputs"):
        await b.enqueue(_x(3))
    await b.stop()


async def test_timed_out_requests_are_skipped_and_free_the_queue() -> None:
    fn = Recorder(delay_s=0.1)
    b = _batcher(fn, max_batch_size=1)
    first = b.enqueue(_x(1))
    await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(b.enqueue(_x(1, 5)), 0.02)
    await first
    await asyncio.sleep(0.05)
    assert fn.sizes == [1]  # the abandoned image never reached the model
    assert b.queued_images == 0
    await b.stop()


async def test_stop_finishes_accepted_work_and_refuses_new() -> None:
    fn = Recorder(delay_s=0.02)
    b = _batcher(fn, max_batch_size=2)
    tasks = [b.enqueue(_x(1, i)) for i in range(6)]
    await asyncio.sleep(0)
    await b.stop()
    assert [float(t.result()[0, 0]) for t in tasks] == [2.0 * i for i in range(6)]
    with pytest.raises(ServiceError) as refused:
        await b.enqueue(_x(1))
    assert refused.value.failure is Failure.SHUTTING_DOWN


async def test_batch_stats_reach_the_observer() -> None:
    seen: list[BatchStats] = []
    b = _batcher(Recorder(), on_batch=seen.append)
    await b.enqueue(_x(3))
    assert seen[0].size == 3 and len(seen[0].queue_waits) == 1 and seen[0].inference_s >= 0
    await b.stop()


@pytest.mark.parametrize(
    "kw", [{"max_batch_size": 0}, {"max_delay_s": -1}, {"max_queue": 0}, {"depth": 0}]
)
def test_parameters_are_validated(kw: dict[str, float]) -> None:
    args: dict[str, object] = dict(name="t", max_batch_size=8, max_delay_s=0.01, max_queue=64)
    args.update(kw)
    ((name, value),) = kw.items()
    with pytest.raises(ValueError, match=f"^{name} must be >= .*, got {value}$"):
        DynamicBatcher(Recorder(), **args)  # type: ignore[arg-type]


def test_the_smallest_valid_parameters_are_accepted() -> None:
    b = DynamicBatcher(Recorder(), name="t", max_batch_size=1, max_delay_s=0, max_queue=1)
    assert (b.max_batch_size, b.max_queue) == (1, 1)


async def test_stop_ends_the_worker_task() -> None:
    b = _batcher(Recorder())
    await b.enqueue(_x(1))
    worker = b._worker
    assert worker is not None and not worker.done()
    await b.stop()
    assert worker.done()
