"""Every benchmark at a size that finishes in minutes on 2 CPU cores; one JSON, one table.

  python -m bench [--list] [--only cache_bench,train_step_bench] [--full] [--readme]

Runs each `bench/*_bench.py`'s `run(quick=True)` in its own process (so peak memory, CPU
affinity and compiled programs of one bench do not leak into the next), then writes
`bench/results/<machine>-<date>.json` and `.md` and prints the table. Derived rows: real
(segment_ids > 0) training tokens/s, packed vs unpacked = train-step tokens/s x the packing
bench's real-token fraction at the same context. On a GPU/TPU the train step measures `small`
and `medium_512` in bf16 against the device's dense bf16 peak. `--readme` puts the table in
README.md's "Performance" section.
"""

import argparse
import importlib
import json
import pathlib
import re
import resource
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402  pylint: disable=g-import-not-at-top

ORDER = (
  "cache_bench",
  "pipeline_bench",
  "packing_bench",
  "train_step_bench",
  "checkpoint_bench",
  "sample_bench",
)
README = common.REPO / "README.md"


def bench_names() -> list[str]:
  """Every bench module in bench/, in the order they run."""
  found = sorted(p.stem for p in (common.REPO / "bench").glob("*_bench.py"))
  return [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]


def child(name: str, kw: dict, quick: bool, result: str):
  """In the bench's own process: run it, add its wall time and peak RSS, write the result."""
  t0 = time.perf_counter()
  res = importlib.import_module(f"bench.{name}").run(quick=quick, **kw)
  res.update(
    wall_s=time.perf_counter() - t0,
    peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
  )
  pathlib.Path(result).write_text(json.dumps(res, default=str))


def run_isolated(name: str, kw: dict, quick: bool) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / "result.json"
    cmd = [
      sys.executable,
      "-m",
      "bench",
      "--child",
      name,
      "--kw",
      json.dumps(kw),
      "--result",
      str(out),
    ] + ([] if quick else ["--full"])
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=common.REPO, check=False).returncode
    if rc or not out.exists():
      return {
        "bench": name,
        "rows": [],
        "error": f"exit status {rc}",
        "wall_s": time.perf_counter() - t0,
      }
    return json.loads(out.read_text())


def links(name: str, results: dict) -> dict:
  """Settings one bench takes from an earlier one's results."""
  if name == "checkpoint_bench":
    small = [
      r for r in results.get("train_step_bench", {}).get("rows", []) if r.get("config") == "small"
    ]
    if small:  # compare the save with the step just measured instead of timing steps again
      return {"step_s": small[0]["step_s"]["median"]}
  return {}


def real_token_rows(results: dict) -> list[dict]:
  """Real training tokens/s: each train-step row x the packing bench's real fraction at its
  context, packed and unpacked."""
  packing = results.get("packing_bench", {}).get("rows", [])
  out = []
  for t in results.get("train_step_bench", {}).get("rows", []):
    for p in (p for p in packing if p["context"] == t["context"]):
      f = p["median"]
      out.append(
        {
          "bench": "derived",
          "unit": "real tokens/s",
          "what": f"training real tokens/s, {t['config']} ({t['batch']}x{t['context']}), "
          f"{'packed' if p['pack'] else 'unpacked'} batches",
          **{k: t[k] * f for k in ("median", "min", "max")},
          "n": t["n"],
          "spread": t["spread"],
          "real_fraction": f,
          "train_tokens_per_s": t["median"],
        }
      )
  return out


def note(r: dict) -> str:
  """What stands beside a figure in the table."""
  parts = []
  if "mfu" in r:
    parts.append(f"MFU {r['mfu']:.1%} of {r['peak_tflops']:.3g} TFLOP/s")
  if "compile_s" in r and "mfu" in r:
    parts.append(f"compile {r['compile_s']:.1f} s")
  for key, label in (("memory_mib", "XLA memory"), ("device_peak_mib", "device peak")):
    if key in r:
      parts.append(f"{label} {r[key]:.0f} MiB")
  if "train_tokens_per_s" in r:
    parts.append(f"{r['train_tokens_per_s']:.4g} tokens/s x real fraction {r['real_fraction']:.3f}")
  elif "real_fraction" in r:
    parts.append(f"real fraction {r['real_fraction']:.3f}")
  if "of_step" in r:
    parts.append(f"{r['of_step']:.3f} of a small train step")
  return "; ".join(parts)


def markdown(report: dict) -> str:
  m = report["machine"]
  v = m["versions"]
  rows = [{**r, "±": f"{r['spread']:.1%}", "notes": note(r)} for r in report["rows"]]
  per_bench = ", ".join(
    f"{n.removesuffix('_bench')} {b['wall_s']:.0f} s"
    + (f" / {b['peak_rss_mib']:.0f} MiB" if "peak_rss_mib" in b else "")
    for n, b in report["benches"].items()
  )
  lines = [
    textwrap.fill(
      f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores), accelerator {m['accelerator']} "
      f"x{m['num_devices']}; jax {v['jax']}, flax {v['flax']}, grain {v['grain']}, "
      f"orbax {v['orbax-checkpoint']}, Python {m['python']}. Load average (1/5/15 min) "
      f"{'/'.join(map(str, report['load_avg_start']))} at the start, "
      f"{'/'.join(map(str, report['load_avg_end']))} at the end (other jobs may share the "
      f"machine); `python -m bench` took {report['total_s'] / 60:.1f} min (per bench: wall "
      f"time / peak RSS of its process: {per_bench}). Each figure: the median of n runs after "
      "a warm-up; ± is the half-range over the median.",
      100,
    ),
    "",
    common.table(rows, ["what", "median", "±", "unit", "n", "notes"]),
    "",
  ]
  lines += [f"- target {k}: {'met' if ok else 'NOT met'}" for k, ok in report["targets"].items()]
  lines += [
    f"- {name} failed: {res['error']}" for name, res in report["benches"].items() if "error" in res
  ]
  return "\n".join(lines) + "\n"


def machine_slug(m: dict) -> str:
  kind = f"cpu{m['cores']}-{m['cpu']}" if m["platform"] == "cpu" else m["accelerator"]
  return re.sub(r"[^a-z0-9]+", "-", re.sub(r"\((r|tm)\)", "", kind.lower())).strip("-")


def update_readme(md: str, md_path: pathlib.Path):
  """Replaces README.md's "## Performance" section body with the latest table."""
  text = README.read_text()
  start = text.index("## Performance\n")
  end = text.find("\n## ", start + 1)
  intro = textwrap.fill(
    f"Latest results (`{md_path.relative_to(common.REPO)}`). Reproduce with `make bench` (or "
    "`.venv/bin/python -m bench`; `--list` names the benches, `--only NAME,...` runs some; "
    "each `bench/*_bench.py` also runs alone with its own flags); it writes "
    "`bench/results/<machine>-<date>.json` and `.md`, and `--readme` puts the table here. On "
    "a GPU/TPU (jax's default backend) the same command measures the train step of `small` "
    "and `medium_512` in bf16 against the device's dense bf16 peak (target: MFU >= 40% for "
    "`medium_512` on an H100); no accelerator run is recorded yet.",
    100,
  )
  body = f"## Performance\n\n{intro}\n\n{md}"
  README.write_text(text[:start] + body + (text[end:] if end >= 0 else ""))


def measure(names: list[str], quick: bool) -> dict:
  """Runs the benches one after another; the combined report."""
  t0, load_start, results = time.perf_counter(), common.load_avg(), {}
  for name in names:
    print(f"\n=== {name} ===", flush=True)
    results[name] = run_isolated(name, links(name, results), quick)
    print(f"=== {name}: {results[name]['wall_s']:.0f} s", flush=True)
  return {
    "machine": common.machine(),
    "quick": quick,
    "load_avg_start": load_start,
    "load_avg_end": common.load_avg(),
    "total_s": time.perf_counter() - t0,
    "rows": [{"bench": n, **r} for n, res in results.items() for r in res["rows"]]
    + real_token_rows(results),
    "targets": {
      f"{n}: {k}": ok for n, res in results.items() for k, ok in res.get("targets", {}).items()
    },
    "benches": results,
  }


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--list", action="store_true", help="name every bench and exit")
  p.add_argument("--only", default="", help="comma-separated bench names (default: all)")
  p.add_argument("--full", action="store_true", help="each bench's own default sizes (slow)")
  p.add_argument("--readme", action="store_true", help="put the table in README.md")
  p.add_argument("--out_dir", default=str(common.RESULTS))
  p.add_argument("--from_json", help="re-render the table (and README) of a saved report")
  p.add_argument("--child", help=argparse.SUPPRESS)
  p.add_argument("--kw", default="{}", help=argparse.SUPPRESS)
  p.add_argument("--result", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.list:
    print("\n".join(bench_names()))
    return 0
  if args.child:
    child(args.child, json.loads(args.kw), not args.full, args.result)
    return 0
  if args.from_json:
    report = json.loads(pathlib.Path(args.from_json).read_text())
  else:
    names = args.only.split(",") if args.only else bench_names()
    unknown = set(names) - set(bench_names())
    if unknown:
      p.error(f"unknown benches {sorted(unknown)}; --list names them")
    report = measure(names, quick=not args.full)
  m = report["machine"]
  stem = pathlib.Path(args.out_dir) / f"{machine_slug(m)}-{m['date']}"
  md = markdown(report)
  common.write_json(stem.name, report, f"{stem}.json")
  pathlib.Path(f"{stem}.md").write_text(md)
  print("\n" + md + f"\nwrote {stem}.json and {stem}.md")
  if args.readme:
    update_readme(md, pathlib.Path(f"{stem}.md"))
    print(f"updated {README}")
  return 1 if any("error" in r for r in report["benches"].values()) else 0


if __name__ == "__main__":
  sys.exit(main())
