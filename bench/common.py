"""What every benchmark shares: the machine description, medians with spread, table and JSON."""

import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"
SHARED = REPO.parent / "shared" / "data" / "workflows"

import absl.flags  # noqa: E402  pylint: disable=g-import-not-at-top

absl.flags.FLAGS.mark_as_parsed()  # grain reads absl flags; nobody else parses them here


def cpu_model() -> str:
  try:
    for line in open("/proc/cpuinfo"):
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def cores() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def load_avg() -> list[float]:
  """`uptime`'s 1, 5 and 15 minute load averages: other jobs may share the machine."""
  return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
  """CPU model, cores, accelerator, library versions and load, recorded beside every figure."""
  import importlib.metadata as md  # pylint: disable=g-import-not-at-top
  import fimjax  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import  # quiet libtpu
  import jax  # pylint: disable=g-import-not-at-top

  versions = {}
  for pkg in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy", "tokenizers"):
    try:
      versions[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
      versions[pkg] = None
  dev = jax.devices()[0]
  return {
    "cpu": cpu_model(),
    "cores": cores(),
    "platform": dev.platform,
    "accelerator": getattr(dev, "device_kind", dev.platform),
    "num_devices": jax.device_count(),
    "python": platform.python_version(),
    "versions": versions,
    "load_avg": load_avg(),
    "date": datetime.date.today().isoformat(),
  }


def stats(samples: list[float]) -> dict:
  """Median and spread (min, max, relative half-range) of repeated measurements."""
  med = statistics.median(samples)
  return {
    "median": med,
    "min": min(samples),
    "max": max(samples),
    "n": len(samples),
    "spread": (max(samples) - min(samples)) / 2 / med if med else 0.0,
  }


def row(what: str, samples: list[float], unit: str, **extra) -> dict:
  """One figure: what it is, its unit, the stats of its samples, and anything beside it."""
  return {"what": what, "unit": unit, **stats(samples), **extra}


def rates(count: float, seconds: list[float]) -> list[float]:
  """Per-run rates (count / s) from per-run seconds."""
  return [count / s for s in seconds]


def timed(fn, repeat: int = 3, warmup: int = 0, cpu: list | None = None):
  """(wall seconds of each of `repeat` runs after `warmup` untimed ones, last result).

  `cpu` (a list) gets each run's CPU seconds of this process, all threads, which other jobs on a
  shared machine disturb much less than wall time.
  """
  out, wall = None, []
  for i in range(warmup + repeat):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    if i >= warmup:
      wall.append(time.perf_counter() - t)
      if cpu is not None:
        cpu.append(time.process_time() - c)
  return wall, out


def options(parser, quick_overrides: dict, quick: bool, kw: dict) -> dict:
  """A bench's settings: its flags' defaults, then the quick sizes (`quick`), then `kw`."""
  args = vars(parser.parse_args([]))
  unknown = set(kw) - set(args)
  if unknown:
    raise TypeError(f"unknown settings: {sorted(unknown)}")
  return {**args, **(quick_overrides if quick else {}), **kw}


def table(rows: list[dict], columns: list[str]) -> str:
  """A Markdown table of `rows` (floats to 4 significant digits)."""

  def cell(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)

  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
  return "\n".join(lines)


def write_json(name: str, payload: dict, out: str | None = None) -> pathlib.Path:
  path = pathlib.Path(out) if out else RESULTS / f"{name}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(payload, indent=2) + "\n")
  return path


def save(name: str, result: dict, out: str | None = None) -> pathlib.Path:
  """A standalone bench's JSON: the machine, then its result; prints where it went."""
  path = write_json(name, {"machine": machine(), **result}, out)
  print(f"wrote {path}")
  return path
