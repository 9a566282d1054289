"""An ordered, bounded map over worker processes: the cache build's way to use every core.

Results come back in input order whatever the number of processes, so a build is the same with 1
process or 16; at most `inflight` tasks per process wait at once, so memory stays bounded however
long the input is.
"""

import collections
import concurrent.futures
import functools
import multiprocessing
import os
from typing import Callable, Iterable, Iterator


def default_num_proc() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ordered_map(
  fn: Callable,
  tasks: Iterable,
  num_proc: int,
  *,
  initializer=None,
  initargs: tuple = (),
  inflight: int = 4,
  **kwargs,
) -> Iterator[tuple]:
  """Yields (task, fn(task, **kwargs)) in the order of `tasks`, in `num_proc` spawned processes
  (in this one when num_proc <= 1; `initializer(*initargs)` runs first in each)."""
  call = functools.partial(fn, **kwargs)
  if num_proc <= 1:
    if initializer is not None:
      initializer(*initargs)
    for task in tasks:
      yield task, call(task)
    return
  ctx = multiprocessing.get_context("spawn")  # fork is unsafe once JAX has started threads
  with concurrent.futures.ProcessPoolExecutor(
    num_proc, mp_context=ctx, initializer=initializer, initargs=initargs
  ) as pool:
    waiting = collections.deque()
    for task in tasks:
      waiting.append((task, pool.submit(call, task)))
      if len(waiting) >= num_proc * inflight:
        task, future = waiting.popleft()
        yield task, future.result()
    while waiting:
      task, future = waiting.popleft()
      yield task, future.result()


def batched(items: Iterable, size: int) -> Iterator[list]:
  """Lists of `size` consecutive items (the last one shorter)."""
  chunk = []
  for item in items:
    chunk.append(item)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk
