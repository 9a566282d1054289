"""Training pipeline speed: tokens/s of finished batches, packed and unpacked, FIM rate 0.5 and 0.

    python bench/pipeline_bench.py [--cores 1] [--context 512] [--seconds 4] [--out FILE]

Documents: the shared corpus (../shared/data/workflows) through the token cache, else synthetic
documents with the corpus's length distribution (log-normal, median 225, mean 451 tokens).
Target (issue): >= 2,000,000 tokens/s (rows x context) on one CPU core at context 512, rate 0.5.
"""

import argparse
import json
import os
import pathlib
import platform
import resource
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from fimjax import config_base  # noqa: E402
from fimjax.data import pipeline  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "workflows"
VOCAB = 8192


def synthetic_documents(num=20_000, seed=0):
  """Log-normal lengths: median 225 (mu = ln 225), mean 451 (sigma^2 / 2 = ln(451 / 225))."""
  from fimjax.data.cache import Documents  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  lengths = rng.lognormal(np.log(225), np.sqrt(2 * np.log(451 / 225)), num).astype(np.int64)
  tokens = rng.integers(0, VOCAB - 1, int(lengths.sum())).astype(np.uint16)
  starts = np.cumsum(lengths) - lengths
  special = {"pad": VOCAB - 1, **{k: VOCAB + i for i, k in enumerate(("bos", "eos", "mask",
                                                                      "mid", "eom"))}}
  return Documents(tokens, starts, lengths), special, "synthetic"


def load_documents(source: str, cache_dir: str, split: str = "train"):
  """(documents, special_ids, description): the shared corpus's cache, or synthetic."""
  if source == "shared" or (source == "auto" and SHARED.is_dir()):
    from fimjax.data import cache  # pylint: disable=g-import-not-at-top
    c = config_base.base_config("medium_512")
    c.data.corpus = str(SHARED)
    tc = cache.ensure_cache(c.data, cache_dir, progress=False, log=lambda s: None)
    docs = tc.documents(split)
    return docs, tc.special_ids, f"shared corpus {split} ({len(docs.lengths)} docs, " \
        f"{int(docs.lengths.sum())} tokens, tokenizer {tc.meta['tokenizer']})"
  return synthetic_documents()


def measure(docs, special, *, context, batch, rate, pack, seconds, threads):
  c = config_base.base_config("medium_512")
  c.model.context, c.train.batch_size, c.fim.rate, c.data.pack = context, batch, rate, pack
  it = iter(pipeline.make_train_dataset(c, docs, special, process_index=0, process_count=1,
                                        num_workers=0, num_threads=threads))
  for _ in range(5):
    next(it)
  n = real = loss = 0
  t0 = time.perf_counter()
  while time.perf_counter() - t0 < seconds:
    b = next(it)
    n += 1
    real += int((b["segment_ids"] > 0).sum())
    loss += int(b["loss_mask"].sum())
  dt = time.perf_counter() - t0
  it.close()
  return {"context": context, "batch": batch, "fim_rate": rate, "pack": pack,
          "threads": threads, "batches_per_s": n / dt,
          "tokens_per_s": n * batch * context / dt, "real_tokens_per_s": real / dt,
          "loss_tokens_per_s": loss / dt, "real_fraction": real / (n * batch * context)}


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--source", choices=["auto", "shared", "synthetic"], default="auto")
  p.add_argument("--cache-dir", default=str(REPO / "runs" / "bench" / "shared_cache"))
  p.add_argument("--cores", type=int, default=1, help="pin the process to this many cores")
  p.add_argument("--context", type=int, default=512)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--threads", type=int, default=1, help="grain prefetch threads (0 = inline)")
  p.add_argument("--seconds", type=float, default=4.0)
  p.add_argument("--out", default=str(REPO / "bench" / "results" / "pipeline_bench.json"))
  args = p.parse_args()
  flags.FLAGS.mark_as_parsed()
  if args.cores and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.cores])
  docs, special, desc = load_documents(args.source, args.cache_dir)
  print(f"documents: {desc}; cores: {len(os.sched_getaffinity(0))}")
  runs = [measure(docs, special, context=args.context, batch=args.batch, rate=rate, pack=pack,
                  seconds=args.seconds, threads=args.threads)
          for rate in (0.5, 0.0) for pack in (True, False)]
  rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f"{'fim_rate':>8} {'pack':>5} {'batches/s':>10} {'Mtok/s':>8} {'real Mtok/s':>12} "
        f"{'real frac':>9}")
  for r in runs:
    print(f"{r['fim_rate']:8.2f} {str(r['pack']):>5} {r['batches_per_s']:10.1f} "
          f"{r['tokens_per_s'] / 1e6:8.2f} {r['real_tokens_per_s'] / 1e6:12.2f} "
          f"{r['real_fraction']:9.3f}")
  print(f"peak RSS: {rss_mb:.0f} MiB")
  result = {"documents": desc, "cores": len(os.sched_getaffinity(0)), "runs": runs,
            "peak_rss_mib": rss_mb, "target_tokens_per_s": 2_000_000,
            "machine": platform.platform(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2) + "\n")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
