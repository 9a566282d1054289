"""What every benchmark shares: the machine description, medians with spread, table and JSON."""

import datetime
import json
import os
import pathlib
import platform
import statistics
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"


def cpu_model() -> str:
  try:
    for line in open("/proc/cpuinfo"):
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine() -> dict:
  """CPU model, cores, accelerator and library versions, recorded beside every figure."""
  import importlib.metadata as md  # pylint: disable=g-import-not-at-top
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
      "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
      "platform": dev.platform,
      "accelerator": getattr(dev, "device_kind", dev.platform),
      "num_devices": jax.device_count(),
      "python": platform.python_version(),
      "versions": versions,
      "date": datetime.date.today().isoformat(),
  }


def stats(samples: list[float]) -> dict:
  """Median and spread (min, max, relative half-range) of repeated measurements."""
  med = statistics.median(samples)
  return {"median": med, "min": min(samples), "max": max(samples), "n": len(samples),
          "spread": (max(samples) - min(samples)) / 2 / med if med else 0.0}


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
