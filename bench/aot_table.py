"""Every config compiled for the TPU slice it is meant for, on this CPU machine (libtpu).

  JAX_PLATFORMS=cpu python bench/aot_table.py [--only small@v5e:2x2,...] [--h100]

Runs `python -m fimjax.fit --topology SLICE --json` once per row, each in its own process, then
prints a markdown table (the one in launch/README.md) and writes
bench/results/aot_table.json. `--h100` adds rows for one H100 (needs the CUDA plugin:
pip install jax-cuda12-plugin jax-cuda12-pjrt; `--python` picks an interpreter that has it).
Each compile takes 1-5 minutes on 2 CPU cores.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "aot_table.json"

# (config, slice, overrides): small and medium_512 on single-host v5e / v6e slices, large on
# v5p / v4 with parameters and optimizer state sharded over the 4 chips (fsdp).
ROWS = (
  ("small", "v5e:2x2", ()),
  ("small", "v6e:2x2", ()),
  ("medium_512", "v5e:2x2", ()),
  ("medium_512", "v6e:2x2", ()),
  ("large", "v5p:2x2x1", ("--config.mesh.fsdp=4",)),
  ("large", "v4:2x2x1", ("--config.mesh.fsdp=4",)),
)
H100_ROWS = (("small", "h100", ()), ("medium_512", "h100", ()))


def run_row(python: str, config: str, topology: str, overrides) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cmd = [
    python,
    "-m",
    "fimjax.fit",
    "--config",
    f"configs/{config}.py",
    "--topology",
    topology,
    "--json",
    *overrides,
  ]
  t0 = time.time()
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
  if proc.returncode:
    return {
      "config": config,
      "topology": topology,
      "overrides": list(overrides),
      "error": (proc.stderr.strip().splitlines() or ["?"])[-1],
    }
  r = json.loads(proc.stdout.strip().splitlines()[-1])
  r.update(overrides=list(overrides), wall_s=round(time.time() - t0, 1))
  return r


def _bound(r) -> str:
  """What set the estimate: XLA's optimal_seconds, or the roofline's HBM or compute term."""
  if not r["est_method"].startswith("roofline"):
    return "XLA"
  sys.path.insert(0, str(REPO))
  from fimjax import aot  # pylint: disable=g-import-not-at-top

  memory = r["xla_bytes"] / aot.hbm_bandwidth(r["device_kind"])
  return "HBM" if abs(memory - r["est_step_s"]) < 1e-9 else "compute"


def table(rows) -> str:
  head = (
    "| config | slice | mesh (data, fsdp, tensor) | attention | fits | GiB per device "
    "(HBM) | params + optimizer / batch + temporaries, GiB | est. step (bound) | MFU "
    "(est.) | compile |\n|---|---|---|---|---|---|---|---|---|---|"
  )
  lines = [head]
  for r in rows:
    if "error" in r:
      lines.append(f"| {r['config']} | {r['topology']} | {r['error']} |||||||| ")
      continue
    g = lambda n: f"{n / 2**30:.2f}"
    s, m = r["split"], r["mesh"]
    step = f"{r['est_step_s'] * 1e3:.0f} ms ({_bound(r)})" if r.get("est_step_s") else "n/a"
    mfu = f"{r['mfu']:.0%}" if r.get("mfu") else "n/a"
    lines.append(
      f"| {r['config']} | {r['topology']} | {m['data']}, {m['fsdp']}, {m['tensor']} | "
      f"{r['attention']} | {'yes' if r['fits'] else 'NO'} | {g(r['per_device_bytes'])} "
      f"({g(r['device_bytes_limit'])}) | {g(s['params'] + s['optimizer'])} / "
      f"{g(s['batch'] + s['temporaries'])} | {step} | {mfu} | {r['compile_s']:.0f} s |"
    )
  return "\n".join(lines)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--only", default="", help="comma-separated config@slice rows")
  p.add_argument("--h100", action="store_true", help="add H100 rows (CUDA plugin)")
  p.add_argument("--python", default=sys.executable, help="interpreter for the H100 rows")
  p.add_argument("--out", default=str(OUT), help="the JSON to write (rows merged with --only)")
  args = p.parse_args()
  out = pathlib.Path(args.out)
  rows = [(c, t, o, sys.executable) for c, t, o in ROWS]
  if args.h100:
    rows += [(c, t, o, args.python) for c, t, o in H100_ROWS]
  if args.only:
    want = set(args.only.split(","))
    rows = [r for r in rows if f"{r[0]}@{r[1]}" in want]
  results = []
  for config, topology, overrides, python in rows:
    results.append(run_row(python, config, topology, overrides))
    print(f"{config} @ {topology}: done", file=sys.stderr, flush=True)
  out.parent.mkdir(parents=True, exist_ok=True)
  old = json.loads(out.read_text()) if out.exists() and args.only else {"rows": []}
  keep = [
    r
    for r in old["rows"]
    if (r["config"], r["topology"]) not in {(x["config"], x["topology"]) for x in results}
  ]
  all_rows = keep + results
  out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": all_rows}, indent=1) + "\n")
  print(table(all_rows))


if __name__ == "__main__":
  main()
