"""Training pipeline speed: tokens/s of finished batches, packed and unpacked, FIM rate 0.5 and 0.

    python bench/pipeline_bench.py [--cores 1] [--context 512] [--seconds 4] [--repeat 3]

Documents: the shared corpus (../shared/data/workflows) through the token cache, else synthetic
documents with the corpus's length distribution (log-normal, median 225, mean 451 tokens).
Each figure is the median (with spread) of `--repeat` windows of `--seconds` after a warm-up.
Target (issue): >= 2,000,000 tokens/s (rows x context) on one CPU core at context 512, rate 0.5.
"""

import argparse
import os
import pathlib
import resource
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench import common  # noqa: E402  pylint: disable=g-import-not-at-top
from fimjax import config_base  # noqa: E402
from fimjax.data import pipeline  # noqa: E402

VOCAB = 8192
QUICK = {"seconds": 2.0, "repeat": 3}


def parser():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--source", choices=["auto", "shared", "synthetic"], default="auto")
  p.add_argument("--cache_dir", "--cache-dir", default=str(common.REPO / "runs/bench/shared_cache"))
  p.add_argument("--cores", type=int, default=1, help="pin the process to this many cores")
  p.add_argument("--context", type=int, default=512)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--threads", type=int, default=1, help="grain prefetch threads (0 = inline)")
  p.add_argument("--seconds", type=float, default=4.0, help="length of one timed window")
  p.add_argument("--repeat", type=int, default=3, help="timed windows per figure")
  p.add_argument("--out", default=str(common.RESULTS / "pipeline_bench.json"))
  return p


def synthetic_documents(num=20_000, seed=0):
  """Log-normal lengths: median 225 (mu = ln 225), mean 451 (sigma^2 / 2 = ln(451 / 225))."""
  from fimjax.data.cache import Documents  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  lengths = rng.lognormal(np.log(225), np.sqrt(2 * np.log(451 / 225)), num).astype(np.int64)
  tokens = rng.integers(0, VOCAB - 1, int(lengths.sum())).astype(np.uint16)
  starts = np.cumsum(lengths) - lengths
  special = {
    "pad": VOCAB - 1,
    **{k: VOCAB + i for i, k in enumerate(("bos", "eos", "mask", "mid", "eom"))},
  }
  return Documents(tokens, starts, lengths), special, "synthetic"


def load_documents(source: str, cache_dir: str, split: str = "train"):
  """(documents, special_ids, description): the shared corpus's cache, or synthetic."""
  if source == "shared" or (source == "auto" and common.SHARED.is_dir()):
    from fimjax.data import cache  # pylint: disable=g-import-not-at-top

    c = config_base.base_config("medium_512")
    c.data.corpus = str(common.SHARED)
    tc = cache.ensure_cache(c.data, cache_dir, progress=False, log=lambda s: None)
    docs = tc.documents(split)
    return (
      docs,
      tc.special_ids,
      f"shared corpus {split} ({len(docs.lengths)} docs, "
      f"{int(docs.lengths.sum())} tokens, tokenizer {tc.meta['tokenizer']})",
    )
  print(f"shared corpus not found at {common.SHARED}: synthetic documents")
  return synthetic_documents()


def train_iterator(docs, special, *, context, batch, rate, pack, **kw):
  """An iterator of training batches of the medium_512 config at these settings."""
  c = config_base.base_config("medium_512")
  c.model.context, c.train.batch_size, c.fim.rate, c.data.pack = context, batch, rate, pack
  return iter(
    pipeline.make_train_dataset(
      c, docs, special, process_index=0, process_count=1, num_workers=0, **kw
    )
  )


def measure(docs, special, *, context, batch, rate, pack, seconds, threads, repeat=1):
  it = train_iterator(
    docs, special, context=context, batch=batch, rate=rate, pack=pack, num_threads=threads
  )
  for _ in range(5):
    next(it)
  tps, real_tps, loss_tps, frac = [], [], [], []
  for _ in range(repeat):
    n = real = loss = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
      b = next(it)
      n += 1
      real += int((b["segment_ids"] > 0).sum())
      loss += int(b["loss_mask"].sum())
    dt = time.perf_counter() - t0
    tps.append(n * batch * context / dt)
    real_tps.append(real / dt)
    loss_tps.append(loss / dt)
    frac.append(real / (n * batch * context))
  it.close()
  return {
    "context": context,
    "batch": batch,
    "fim_rate": rate,
    "pack": pack,
    "threads": threads,
    "batches_per_s": float(np.median(tps)) / (batch * context),
    "tokens_per_s": float(np.median(tps)),
    "real_tokens_per_s": float(np.median(real_tps)),
    "loss_tokens_per_s": float(np.median(loss_tps)),
    "real_fraction": float(np.median(frac)),
    "samples": {"tokens_per_s": tps, "real_tokens_per_s": real_tps},
  }


def run(quick: bool = False, **kw) -> dict:
  o = common.options(parser(), QUICK, quick, kw)
  before = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
  try:
    if o["cores"] and before:
      os.sched_setaffinity(0, sorted(before)[: o["cores"]])
    cores = common.cores()
    docs, special, desc = load_documents(o["source"], o["cache_dir"])
    print(f"documents: {desc}; cores: {cores}")
    runs = [
      measure(
        docs,
        special,
        context=o["context"],
        batch=o["batch"],
        rate=rate,
        pack=pack,
        seconds=o["seconds"],
        threads=o["threads"],
        repeat=o["repeat"],
      )
      for rate in (0.5, 0.0)
      for pack in (True, False)
    ]
  finally:
    if before:
      os.sched_setaffinity(0, before)
  rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(
    f"{'fim_rate':>8} {'pack':>5} {'batches/s':>10} {'Mtok/s':>8} {'spread':>6} "
    f"{'real Mtok/s':>12} {'real frac':>9}"
  )
  rows = []
  for r in runs:
    kind = "packed" if r["pack"] else "unpacked"
    rows.append(
      common.row(
        f"pipeline, FIM rate {r['fim_rate']}, {kind} (context {r['context']})",
        [x / cores for x in r["samples"]["tokens_per_s"]],
        "tokens/s/core",
        real_fraction=r["real_fraction"],
      )
    )
    print(
      f"{r['fim_rate']:8.2f} {str(r['pack']):>5} {r['batches_per_s']:10.1f} "
      f"{r['tokens_per_s'] / 1e6:8.2f} {rows[-1]['spread']:6.0%} "
      f"{r['real_tokens_per_s'] / 1e6:12.2f} {r['real_fraction']:9.3f}"
    )
  print(f"peak RSS: {rss_mb:.0f} MiB")
  target = 2_000_000
  met = rows[0]["median"] >= target
  print(f"target >= {target:,} tokens/s per core (rate 0.5, packed): {'met' if met else 'NOT met'}")
  return {
    "bench": "pipeline_bench",
    "rows": rows,
    "documents": desc,
    "cores": cores,
    "runs": runs,
    "peak_rss_mib": rss_mb,
    "target_tokens_per_s": target,
    "targets": {"at_least_2M_tokens_per_s_per_core": met},
  }


def main(argv=None):
  args = parser().parse_args(argv)
  common.save("pipeline_bench", run(**vars(args)), args.out)


if __name__ == "__main__":
  main()
