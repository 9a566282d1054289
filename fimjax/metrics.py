"""Where metrics go: `metrics.jsonl` and TensorBoard in the workdir, and a terminal progress bar.

Only process 0 writes; on other processes every method is a no-op. jax is imported where it is
used, so that a notebook can read metrics without it.
"""

import json
import logging
import math
import os
import time

import tqdm

log = logging.getLogger(__name__)


def _plain(value):
  """JSON-safe scalar (numpy and jax scalars to Python; NaN/inf to strings json can hold)."""
  value = value.item() if hasattr(value, "item") else value
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricsWriter:
  """Appends one JSON object per call to `<workdir>/metrics.jsonl` and mirrors it to TensorBoard."""

  def __init__(self, workdir: str, *, enabled: bool | None = None, mirror: str | None = None):
    """`mirror`: a remote run directory (gs://...) that receives a copy at every flush."""
    self.enabled = _process_index() == 0 if enabled is None else enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.mirror = mirror
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      _cut_torn_tail(self.path)
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, metrics: dict) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for key, value in record.items():
      if key != "step" and isinstance(value, (int, float)):
        self._tb.add_scalar(key, value, int(step))

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()
    self.mirror_file(self.path)

  def mirror_file(self, path: str | None) -> None:
    """Copies a local output file into the remote run directory, if there is one."""
    if self.enabled and self.mirror and path and os.path.exists(path):
      from etils import epath  # pylint: disable=g-import-not-at-top
      dst = epath.Path(self.mirror) / os.path.basename(path)
      dst.write_bytes(open(path, "rb").read())

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self.mirror_file(self.path)


def _process_index() -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index()


def _cut_torn_tail(path: str) -> None:
  """Removes a torn last record (a run stopped mid-write) so that appends start on a new line."""
  if not os.path.exists(path):
    return
  with open(path, "rb+") as f:
    data = f.read()
    if not data or data.endswith(b"\n"):
      return
    cut = data.rfind(b"\n") + 1
    try:
      json.loads(data[cut:])
      f.write(b"\n")  # only the newline was lost
    except ValueError:
      f.truncate(cut)
      log.warning("%s: removed a torn last line (%d bytes; a run stopped while writing it)",
                  path, len(data) - cut)


def read_metrics(workdir: str) -> list[dict]:
  """All records of `<workdir>/metrics.jsonl` (a resumed run appends; later lines win on plots).

  A torn last line (a run stopped while writing it) is skipped with a warning; a bad line
  elsewhere raises ValueError naming the file and line.
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8", errors="replace") as f:
    lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
  records = []
  for n, line in lines:
    try:
      record = json.loads(line)
      if not isinstance(record, dict) or "step" not in record:
        raise ValueError("not a record with a step")
    except ValueError as e:
      if n == lines[-1][0]:
        log.warning("%s:%d: skipped a torn last line (a run stopped while writing it)", path, n)
        continue
      raise ValueError(f"{path}:{n}: not a metrics record ({getattr(e, 'msg', e)}): repair or "
                       "delete that line") from None
    records.append(record)
  return records


class Progress:
  """A tqdm bar over training steps showing loss, tokens/s, MFU and ETA (process 0 only)."""

  def __init__(self, start: int, total: int, *, enabled: bool = True):
    self.enabled = enabled and _process_index() == 0
    self._bar = None
    if self.enabled:
      self._bar = tqdm.tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                            smoothing=0.1, mininterval=1.0)
    self._last = start
    self._t0 = time.monotonic()

  def update(self, step: int, **postfix) -> None:
    if self._bar is None:
      return
    self._bar.update(step - self._last)
    self._last = step
    if postfix:
      self._bar.set_postfix({k: _fmt(v) for k, v in postfix.items()}, refresh=False)

  def write(self, message: str) -> None:
    if self._bar is not None:
      self._bar.write(message)
    elif _process_index() == 0:
      print(message, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def _fmt(value):
  if isinstance(value, float):
    return f"{value:.4g}"
  return value
