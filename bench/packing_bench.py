"""Packing: fraction of real (non-padding) tokens per training batch, packed vs unpacked.

    python bench/packing_bench.py [--contexts 512 1024] [--epochs 2] [--out FILE]

Runs the training pipeline on the shared corpus (through the token cache; synthetic documents
when it is missing) for whole epochs at FIM rate 0.5; each figure is the median (with spread) of
the epochs' fractions. Target (issue): >= 95% real tokens per packed batch at context 512 and 1024.
"""

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench import common  # noqa: E402  pylint: disable=g-import-not-at-top
from bench import pipeline_bench  # noqa: E402  pylint: disable=g-import-not-at-top
from fimjax.data import fim  # noqa: E402

QUICK = {"epochs": 3}


def parser():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--source", choices=["auto", "shared", "synthetic"], default="auto")
  p.add_argument("--cache_dir", "--cache-dir", default=str(common.REPO / "runs/bench/shared_cache"))
  p.add_argument("--contexts", type=int, nargs="+", default=[512, 1024])
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--rate", type=float, default=0.5)
  p.add_argument("--epochs", type=int, default=2)
  p.add_argument("--out", default=str(common.RESULTS / "packing_bench.json"))
  return p


def measure(docs, special, *, context, batch, rate, pack, epochs):
  windows = fim.WindowTable(docs.lengths, context).num_windows
  it = pipeline_bench.train_iterator(
    docs, special, context=context, batch=batch, rate=rate, pack=pack
  )
  real, loss, epoch_of, examples = [], [], [], 0
  while examples < epochs * windows:
    b = next(it)
    seg = b["segment_ids"]
    real.append((seg > 0).mean())
    loss.append(b["loss_mask"].mean())
    epoch_of.append(examples // windows)
    examples += int(seg.max(1).sum())  # segments per row = examples per row
  it.close()
  real, epoch_of = np.array(real), np.array(epoch_of)
  return {
    "context": context,
    "batch": batch,
    "fim_rate": rate,
    "pack": pack,
    "batches": len(real),
    "windows_per_epoch": windows,
    "examples_per_row": examples / (len(real) * batch),
    "real_fraction": float(real.mean()),
    "real_fraction_per_epoch": [float(real[epoch_of == e].mean()) for e in range(epochs)],
    "real_fraction_min_batch": float(real.min()),
    "real_fraction_p5_batch": float(np.percentile(real, 5)),
    "loss_fraction": float(np.mean(loss)),
  }


def run(quick: bool = False, **kw) -> dict:
  o = common.options(parser(), QUICK, quick, kw)
  docs, special, desc = pipeline_bench.load_documents(o["source"], o["cache_dir"])
  print(f"documents: {desc}")
  runs = [
    measure(
      docs, special, context=ctx, batch=o["batch"], rate=o["rate"], pack=pack, epochs=o["epochs"]
    )
    for ctx in o["contexts"]
    for pack in (True, False)
  ]
  print(
    f"{'context':>7} {'pack':>5} {'real frac':>9} {'min batch':>9} {'p5 batch':>8} "
    f"{'loss frac':>9} {'ex/row':>6}"
  )
  for r in runs:
    print(
      f"{r['context']:7d} {str(r['pack']):>5} {r['real_fraction']:9.4f} "
      f"{r['real_fraction_min_batch']:9.4f} {r['real_fraction_p5_batch']:8.4f} "
      f"{r['loss_fraction']:9.4f} {r['examples_per_row']:6.2f}"
    )
  rows = [
    common.row(
      f"packing: real-token fraction, {'packed' if r['pack'] else 'unpacked'} "
      f"(context {r['context']}, FIM rate {r['fim_rate']})",
      r["real_fraction_per_epoch"],
      "fraction",
      context=r["context"],
      pack=r["pack"],
    )
    for r in runs
  ]
  met = all(r["median"] >= 0.95 for r in rows if r["pack"])
  print(f"target >= 95% real tokens per packed batch: {'met' if met else 'NOT met'}")
  return {
    "bench": "packing_bench",
    "rows": rows,
    "documents": desc,
    "runs": runs,
    "target_real_fraction": 0.95,
    "targets": {"packed_real_fraction_at_least_0.95": met},
  }


def main(argv=None):
  args = parser().parse_args(argv)
  common.save("packing_bench", run(**vars(args)), args.out)


if __name__ == "__main__":
  main()
