"""forecast.workers.in_threads: the plain loop's results, in order, a few tasks at a time."""

import threading
import time

import pytest

from forecast.errors import ForecastError
from forecast.workers import in_threads, in_workers


def test_in_threads_keeps_the_order_and_runs_tasks_together():
    seen: set[int] = set()

    def work(k: int) -> int:
        seen.add(threading.get_ident())
        time.sleep(0.02 * (5 - k))  # the first tasks finish last
        return k * k

    assert in_threads(work, list(range(5)), 3) == [0, 1, 4, 9, 16]
    assert len(seen) > 1  # more than one thread did the work
    seen.clear()
    assert in_threads(work, list(range(5)), 1) == [0, 1, 4, 9, 16]
    assert seen == {threading.get_ident()}  # jobs = 1: the caller's thread alone
    assert in_threads(work, [], 2) == []


def test_in_threads_raises_the_tasks_error_and_refuses_bad_jobs():
    def work(k: int) -> int:
        if k == 2:
            raise ForecastError("task 2 failed")
        return k

    with pytest.raises(ForecastError, match="task 2 failed"):
        in_threads(work, [0, 1, 2, 3], 2)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ForecastError, match="jobs must be an integer >= 1"):
            in_threads(work, [0, 1], bad)


def test_in_workers_with_no_task_starts_no_worker():
    """Every task already done (e.g. all cached): nothing to yield, no pool of 0 processes."""
    assert list(in_workers(str, [], 2, "nothing", False)) == []
