"""Where metrics go: `metrics.jsonl` and TensorBoard in the workdir, a terminal progress bar, and
the summaries the loop logs (step means, throughput and MFU; the headline evaluation line).

Only process 0 writes; on other processes every method is a no-op. jax is imported where it is
used, so that a notebook can read metrics without it.
"""

import json
import logging
import math
import os
import sys
import time
import uuid

import numpy as np
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

  def __init__(
    self,
    workdir: str,
    *,
    enabled: bool | None = None,
    mirror: str | None = None,
    wandb_project: str = "",
    config: dict | None = None,
  ):
    """`mirror`: a remote run directory (gs://...) that receives a copy at every flush.

    `wandb_project`: also log to Weights & Biases (offline with WANDB_MODE=offline); a resumed
    run continues the same W&B run (its id is kept in `<workdir>/wandb_id`).
    """
    self.enabled = _process_index() == 0 if enabled is None else enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.mirror = mirror
    self._tb = self._wandb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      _cut_torn_tail(self.path)
      if wandb_project:  # first: if it fails, nothing else is left open
        self._wandb = _start_wandb(workdir, wandb_project, config)
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
    if self._wandb is not None:
      self._wandb.log({k: v for k, v in record.items() if k != "step"}, step=int(step))

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
    if self._wandb is not None:
      self._wandb.finish()
      self._wandb = None


def _start_wandb(workdir: str, project: str, config: dict | None):
  """A W&B run for this workdir: the same run id on every resume."""
  try:
    import wandb  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SystemExit(
      "--config.train.wandb_project needs wandb: pip install 'fimjax[wandb]'"
    ) from None
  id_file = os.path.join(workdir, "wandb_id")
  if os.path.exists(id_file):
    run_id = open(id_file).read().strip()
  else:
    run_id = uuid.uuid4().hex[:8]
    with open(id_file, "w") as f:
      f.write(run_id + "\n")
  return wandb.init(
    project=project,
    id=run_id,
    resume="allow",
    dir=workdir,
    config=config,
    name=os.path.basename(os.path.abspath(workdir)),
  )


class StepProfiler:
  """A jax.profiler trace of steps START+1..START+COUNT (`train.profile_steps="START,COUNT"`).

  Written to `<logdir>/profile/` as an XPlane (TensorBoard's profile plugin) and a Perfetto trace
  (`perfetto_trace.json.gz`, opens in ui.perfetto.dev). All processes trace their own devices.
  """

  def __init__(self, window: tuple[int, int] | None, logdir: str):
    self.window, self.dir, self.active = window, os.path.join(logdir, "profile"), False

  def before_step(self, done: int) -> None:
    if self.window and done == self.window[0]:
      import jax  # pylint: disable=g-import-not-at-top

      jax.profiler.start_trace(self.dir, create_perfetto_trace=True)
      self.active = True

  def after_step(self, done: int, state) -> str | None:
    """Stops the trace after its last step (waiting for it to finish); returns what was written."""
    if not (self.active and done == sum(self.window)):
      return None
    import jax  # pylint: disable=g-import-not-at-top

    jax.block_until_ready(state)
    self.close()
    return f"profile of steps {self.window[0] + 1}-{done} written to {self.dir}"

  def close(self) -> None:
    if self.active:
      import jax  # pylint: disable=g-import-not-at-top

      jax.profiler.stop_trace()
      self.active = False


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
      log.warning(
        "%s: removed a torn last line (%d bytes; a run stopped while writing it)",
        path,
        len(data) - cut,
      )


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
      raise ValueError(
        f"{path}:{n}: not a metrics record ({getattr(e, 'msg', e)}): repair or delete that line"
      ) from None
    records.append(record)
  return records


class Progress:
  """Training progress on process 0: loss, tokens/s, MFU and ETA.

  On a terminal, a tqdm bar; when stdout is not a TTY (SLURM, pods, nohup, CI), one plain line
  per log step instead, since a bar there is one carriage-return line nobody can read.
  """

  def __init__(self, start: int, total: int, *, enabled: bool = True, tty: bool | None = None):
    self.enabled = enabled and _process_index() == 0
    self.total = total
    self._bar = None
    tty = sys.stdout.isatty() if tty is None else tty
    if self.enabled and tty:
      self._bar = tqdm.tqdm(
        total=total, initial=start, unit="step", dynamic_ncols=True, smoothing=0.1, mininterval=1.0
      )
    self._start = self._last = start
    self._t0 = time.monotonic()

  def update(self, step: int, **postfix) -> None:
    if not self.enabled:
      return
    if self._bar is None:
      print(self.line(step, time.monotonic() - self._t0, **postfix), flush=True)
    else:
      self._bar.update(step - self._last)
      if postfix:
        self._bar.set_postfix({k: _fmt(v) for k, v in postfix.items()}, refresh=False)
    self._last = step

  def line(self, step: int, elapsed: float, **postfix) -> str:
    """`step 50/400 (12%) loss=3.12 tok_s=5120 mfu=3.1% eta 2m10s`: one log step, plainly."""
    done = step - self._start
    eta = (self.total - step) * elapsed / done if done > 0 else None
    fields = " ".join(f"{k}={_fmt(v)}" for k, v in postfix.items())
    return (
      f"step {step}/{self.total} ({step / self.total:.0%}) {fields}"
      f" eta {_duration(eta) if eta is not None else '?'}"
    )

  def write(self, message: str) -> None:
    if self._bar is not None:
      self._bar.write(message)
    elif _process_index() == 0:
      print(message, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _fmt(value):
  if isinstance(value, float):
    return f"{value:.4g}"
  return value


EVAL_SHOWN = {
  "eval_loss": "validation loss {:.4f}",
  "eval_fim_loss": "FIM middle loss {:.4f}",
  "eval_fim_eom_acc": "EOM accuracy {:.0%}",
  "infill_exact": "infill exact match {:.1%}",
  "infill_exact_value": "value {:.0%}",
  "infill_exact_line": "line {:.0%}",
  "gen_schema_valid_rate": "generated schema-valid {:.0%}",
}


def eval_line(metrics: dict) -> str:
  """The headline evaluation figures (all of them go to metrics.jsonl); a hole kind's exact
  match with its sample size and standard error, as "value 30% of 96 (+-5)"."""
  shown = []
  for k, fmt in EVAL_SHOWN.items():
    if k not in metrics:
      continue
    text, kind = fmt.format(metrics[k]), k.removeprefix("infill_exact_")
    if kind != k and f"infill_n_{kind}" in metrics:
      se = metrics.get(f"infill_se_{kind}") or 0.0
      text += f" of {metrics[f'infill_n_{kind}']}" + (f" (+-{se * 100:.0f})" if se else "")
    shown.append(text)
  return ", ".join(shown)


def summarize_steps(
  fetched: list[dict],
  elapsed: float,
  tokens_per_step: int,
  flops_per_token: float,
  peak_flops: float,
) -> dict:
  """Means of the step metrics since the last log, plus throughput and MFU."""
  n = len(fetched)
  loss_tokens = sum(float(m["tokens"]) for m in fetched)
  tokens_per_s = n * tokens_per_step / max(elapsed, 1e-9)
  out = {
    k: float(np.mean([m[k] for m in fetched])) for k in ("loss", "ar_loss", "fim_loss", "grad_norm")
  }
  out["lr"] = float(fetched[-1]["lr"])
  out["tokens_per_s"] = tokens_per_s
  out["loss_tokens_per_s"] = loss_tokens / max(elapsed, 1e-9)
  out["mfu"] = tokens_per_s * flops_per_token / peak_flops
  return out
