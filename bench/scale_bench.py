"""Cache build and pipeline start-up at scale: 10k, 100k and 1M synthetic documents.

  .venv/bin/python bench/scale_bench.py --sizes 10000,100000,1000000 [--num_proc 0]

Each size is written as JSONL shards of 100k rows (the format code datasets come in): generated
workflows (fimjax.synthetic, 100k distinct ones at most, each row made unique by a
comment line). The build runs `python -m fimjax.data.cache build` in a child process (BPE, the
default reader settings) and reports files/s, the child's peak RSS and the cache's disk size;
then a second child loads the cache and builds the training pipeline (the window table) and
reports its start-up time to the first batch and peak RSS. Targets (issue 16, 2 cores): whole
build >= 2,000 files/s at 100k documents; build peak RSS < 2 GB at 1M.
"""

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

SHARD_ROWS = 100_000
DISTINCT = 100_000

_PIPELINE = """
import json, resource, sys, time
import absl.flags; absl.flags.FLAGS.mark_as_parsed()
t0 = time.perf_counter()
from fimjax import config_base
from fimjax.data import cache_format, pipeline
c = config_base.base_config("tiny")
tc = cache_format.load_cache(sys.argv[1])
docs = tc.documents("train")
t_load = time.perf_counter() - t0
it = iter(pipeline.make_train_dataset(c, docs, tc.special_ids, process_index=0, process_count=1))
batch = next(it)
print(json.dumps({"load_s": t_load, "first_batch_s": time.perf_counter() - t0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_corpus(folder: pathlib.Path, n: int) -> None:
  from fimjax.synthetic import generator  # pylint: disable=g-import-not-at-top

  base = [generator.generate(i) for i in range(min(n, DISTINCT))]
  for s in range(0, n, SHARD_ROWS):
    with open(folder / f"shard-{s // SHARD_ROWS:04d}.jsonl", "w") as f:
      for i in range(s, min(n, s + SHARD_ROWS)):
        text = base[i % len(base)] + (f"# copy {i // len(base)}\n" if i >= len(base) else "")
        f.write(json.dumps({"content": text, "path": f"gen/{i}.yml"}) + "\n")


def child(cmd: list[str]) -> tuple[float, float, str]:
  """(wall seconds, peak RSS MB of the child, stdout) of a child process."""
  before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  t = time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=common.REPO)
  wall = time.perf_counter() - t
  if proc.returncode:
    raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
  # ru_maxrss of children is the largest of any child so far: sizes run in increasing order.
  rss = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
  return wall, rss, proc.stdout


def bench_size(n: int, tmp: pathlib.Path, num_proc: int) -> dict:
  src, out = tmp / f"corpus-{n}", tmp / f"cache-{n}"
  src.mkdir()
  t = time.perf_counter()
  write_corpus(src, n)
  gen_s = time.perf_counter() - t
  cmd = [
    sys.executable,
    "-m",
    "fimjax.data.cache",
    "build",
    "--input",
    str(src),
    "--out",
    str(out),
    "--tokenizer",
    "bpe",
    "--no-progress",
  ]
  if num_proc:
    cmd += ["--num-proc", str(num_proc)]
  build_s, build_rss, _ = child(cmd)
  meta = json.loads((out / "meta.json").read_text())
  disk = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
  pipe = json.loads(child([sys.executable, "-c", _PIPELINE, str(out)])[2].strip().splitlines()[-1])
  return {
    "documents": n,
    "kept": sum(meta["num_documents"].values()),
    "tokens": sum(meta["num_tokens"].values()),
    "generate_s": round(gen_s, 1),
    "build_s": round(build_s, 1),
    "files_per_s": round(n / build_s),
    "build_peak_rss_mb": round(build_rss),
    "build_phases_s": meta.get("build_phases_s"),
    "disk_mb": round(disk / 2**20, 1),
    "input_mb": round(sum(f.stat().st_size for f in src.iterdir()) / 2**20, 1),
    "pipeline_load_s": round(pipe["load_s"], 2),
    "pipeline_first_batch_s": round(pipe["first_batch_s"], 2),
    "pipeline_rss_mb": round(pipe["rss_mb"]),
  }


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sizes", default="10000,100000,1000000")
  p.add_argument("--num_proc", type=int, default=0, help="build processes (0 = the build's auto)")
  p.add_argument("--out", default=str(common.RESULTS / "scale_bench.json"))
  o = p.parse_args()
  rows = []
  print(
    "| documents | build s | files/s | build peak RSS MB | cache MB | input MB | "
    "pipeline start s | pipeline RSS MB |\n|---|---|---|---|---|---|---|---|"
  )
  with tempfile.TemporaryDirectory() as tmp:
    for n in map(int, o.sizes.split(",")):
      r = bench_size(n, pathlib.Path(tmp), o.num_proc)
      rows.append(r)
      print(
        f"| {n:,} | {r['build_s']} | {r['files_per_s']:,} | {r['build_peak_rss_mb']:,} | "
        f"{r['disk_mb']} | {r['input_mb']} | {r['pipeline_first_batch_s']} | "
        f"{r['pipeline_rss_mb']:,} |",
        flush=True,
      )
      for f in pathlib.Path(tmp).iterdir():  # free the disk before the next size
        subprocess.run(["rm", "-rf", str(f)], check=True)
  pathlib.Path(o.out).write_text(
    json.dumps({"rows": rows, "machine": common.machine()}, indent=1) + "\n"
  )
  print(f"wrote {o.out}")


if __name__ == "__main__":
  main()
