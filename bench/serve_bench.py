"""Server latency and throughput on a tiny model: `python -m fimjax.serve` over real HTTP.

    python bench/serve_bench.py [--model PATH] [--requests 50] [--clients 8] [--per-client 10]
                                [--max-batch 8] [--max-tokens 32] [--out FILE]

The model: `--model`, else runs/mix1600 (configs/tiny.py, 1,600 steps) when it has checkpoints,
else a 20-step tiny run trained into a temporary folder (about 2 minutes). The server
(`fimjax.serve.Server`) runs in this process on 127.0.0.1, a free port; clients are urllib in
threads. Every request is a greedy infill of one hole (a workflow's `runs-on` value, `--max-tokens`
at most), so each costs the same. Figures:
  - the first request (it compiles the sampler), then `--requests` sequential ones: latency
    p50/p95 as the client sees it, and the server's own compute time;
  - `--clients` clients each sending `--per-client` requests back to back (distinct texts):
    requests/s and latency, with batching (`--max-batch`) and without (max batch 1). The batch
    shapes (1, 2, 4, ... `--max-batch`) are compiled before the timed rounds.
Writes bench/results/serve.json.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench import common  # noqa: E402  pylint: disable=g-import-not-at-top
from fimjax import api  # noqa: E402
from fimjax import serve  # noqa: E402

DEFAULT_MODEL = common.REPO / "runs" / "mix1600"
QUICK = {"requests": 20, "per_client": 4}
TEXT = (
  "name: CI {i}\non:\n  push:\n    branches: [main]\njobs:\n  test{i}:\n"
  "    runs-on: <FILL>\n    steps:\n      - uses: actions/checkout@v4\n"
  "      - run: make test\n"
)


def parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="", help="a run's workdir or checkpoint (default: see above)")
  p.add_argument("--requests", type=int, default=50, help="sequential requests timed")
  p.add_argument("--clients", type=int, default=8, help="concurrent clients")
  p.add_argument("--per_client", "--per-client", type=int, default=10)
  p.add_argument("--max_batch", "--max-batch", type=int, default=8)
  p.add_argument("--max_tokens", "--max-tokens", type=int, default=32)
  p.add_argument("--out", default=None, help="JSON path (default bench/results/serve.json)")
  return p


def model_path(given: str, tmp: str) -> tuple[str, str]:
  """(path, what it is): the given model, runs/mix1600, or a 20-step tiny run trained now."""
  if given:
    return given, given
  if any(p.name.isdigit() for p in (DEFAULT_MODEL / "checkpoints").glob("*")):
    return str(DEFAULT_MODEL), "runs/mix1600 (configs/tiny.py, 1600 steps)"
  workdir = f"{tmp}/servebench"
  subprocess.run(
    [
      sys.executable,
      "-m",
      "fimjax.main",
      "--config",
      "configs/tiny.py",
      "--workdir",
      workdir,
      "--config.train.steps=20",
      "--nodemo",
    ],
    cwd=common.REPO,
    check=True,
  )
  return workdir, "configs/tiny.py, 20 steps (trained by the bench)"


def post(url: str, body: dict) -> tuple[float, dict]:
  """(client seconds, answer) of one /infill request."""
  req = urllib.request.Request(
    url + "/infill", json.dumps(body).encode(), {"Content-Type": "application/json"}
  )
  t = time.perf_counter()
  with urllib.request.urlopen(req, timeout=600) as r:
    out = json.loads(r.read())
  return time.perf_counter() - t, out


def warm_batches(server, sizes, body):
  """Compiles each batch shape: `n` requests queued while the worker waits, then one call."""
  for n in sizes:
    server.worker.gate.clear()
    texts = [TEXT.format(i=7000 + k) for k in range(n)]  # as many digits as the timed ones
    threads = [threading.Thread(target=post, args=(server.url, {**body, "text": t})) for t in texts]
    for t in threads:
      t.start()
    server.worker.wait_queued(n, timeout=60)
    server.worker.gate.set()
    for t in threads:
      t.join()


def concurrent(server, clients: int, per_client: int, body: dict) -> dict:
  """`clients` threads, each sending `per_client` requests back to back."""
  lat, batches = [], []
  lock = threading.Lock()

  def client(c):
    for k in range(per_client):
      s, out = post(server.url, {**body, "text": TEXT.format(i=c * 1000 + k)})
      with lock:
        lat.append(s)
        batches.append((out["batch"], out["compute_ms"]))

  threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
  t = time.perf_counter()
  for th in threads:
    th.start()
  for th in threads:
    th.join()
  wall = time.perf_counter() - t
  by_size = {}
  for size, ms in batches:
    by_size.setdefault(size, []).append(ms)
  return {
    "requests": clients * per_client,
    "wall_s": wall,
    "requests_per_s": clients * per_client / wall,
    "latency_s": lat,
    "mean_batch": statistics.mean(b for b, _ in batches),
    "call_ms_by_batch": {b: statistics.median(v) for b, v in sorted(by_size.items())},
  }


def pct(xs, q) -> float:
  return float(np.percentile(xs, q))


def run(quick: bool = False, **kw) -> dict:
  o = common.options(parser(), QUICK, quick, kw)
  body = {"max_tokens": o["max_tokens"]}
  with tempfile.TemporaryDirectory() as tmp:
    path, what = model_path(o["model"], tmp)
    model = api.load(path)
  rows, sizes = [], [1 << i for i in range(o["max_batch"].bit_length()) if 1 << i < o["max_batch"]]
  with serve.Server(model, port=0, max_batch=o["max_batch"], verbose=False) as server:
    first, out = post(server.url, {**body, "text": TEXT.format(i=0)})
    rows.append(common.row("first infill request (compiles)", [first], "s"))
    seq = [post(server.url, {**body, "text": TEXT.format(i=0)}) for _ in range(o["requests"])]
    lat = [s for s, _ in seq]
    compute = [a["compute_ms"] / 1e3 for _, a in seq]
    rows.append(
      common.row(
        f"infill latency, {o['requests']} sequential requests",
        lat,
        "s",
        p50=pct(lat, 50),
        p95=pct(lat, 95),
      )
    )
    rows.append(
      common.row(
        "  of which the sampler (server compute_ms)",
        compute,
        "s",
        p50=pct(compute, 50),
        p95=pct(compute, 95),
      )
    )
    warm_batches(server, sizes + [o["max_batch"]], body)
    rounds = {}
    for max_batch in (o["max_batch"], 1):
      server.worker.max_batch = max_batch
      r = concurrent(server, o["clients"], o["per_client"], body)
      rounds[max_batch] = r
      rows.append(
        common.row(
          f"{o['clients']} concurrent clients, max batch {max_batch}: throughput",
          [r["requests_per_s"]],
          "requests/s",
          p50=pct(r["latency_s"], 50),
          p95=pct(r["latency_s"], 95),
          mean_batch=r["mean_batch"],
          call_ms_by_batch=r["call_ms_by_batch"],
        )
      )
    stats = server.worker.snapshot()
  print(f"model: {what} ({path}), step {model.step}; filled: {out['text'].splitlines()[6]!r}")
  print(
    common.table(rows, ["what", "median", "unit", "p50", "p95", "mean_batch", "n"])
    + "\n(latency p50/p95 in seconds, as the client sees it)"
  )
  speedup = rounds[o["max_batch"]]["requests_per_s"] / rounds[1]["requests_per_s"]
  print(
    f"batching: {speedup:.2f}x the requests/s of one request per sampler call; median "
    f"ms per call by batch size: {rounds[o['max_batch']]['call_ms_by_batch']}"
  )
  return {
    "bench": "serve_bench",
    "model": what,
    "model_path": path,
    "step": model.step,
    "settings": o,
    "rows": rows,
    "batching_speedup": speedup,
    "server_stats": stats,
    "targets": {},
  }


def main(argv=None):
  args = parser().parse_args(argv)
  common.save("serve", run(**vars(args)), args.out)


if __name__ == "__main__":
  main()
