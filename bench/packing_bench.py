"""Packing: fraction of real (non-padding) tokens per training batch, packed vs unpacked.

    python bench/packing_bench.py [--contexts 512 1024] [--epochs 2] [--out FILE]

Runs the training pipeline on the shared corpus (through the token cache; synthetic documents
when it is missing) for whole epochs at FIM rate 0.5. Target (issue): >= 95% real tokens per
packed batch at context 512 and 1024.
"""

import argparse
import json
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from fimjax import config_base  # noqa: E402
from fimjax.data import fim, pipeline  # noqa: E402
import pipeline_bench  # noqa: E402  pylint: disable=g-import-not-at-top


def measure(docs, special, *, context, batch, rate, pack, epochs):
  c = config_base.base_config("medium_512")
  c.model.context, c.train.batch_size, c.fim.rate, c.data.pack = context, batch, rate, pack
  windows = fim.WindowTable(docs.lengths, context).num_windows
  it = iter(pipeline.make_train_dataset(c, docs, special, process_index=0, process_count=1,
                                        num_workers=0))
  real, loss, examples, seen = [], [], 0, 0
  while examples < epochs * windows:
    b = next(it)
    seg = b["segment_ids"]
    real.append((seg > 0).mean())
    loss.append(b["loss_mask"].mean())
    examples += int(seg.max(1).sum())  # segments per row = examples per row
    seen += 1
  it.close()
  real = np.array(real)
  return {"context": context, "batch": batch, "fim_rate": rate, "pack": pack,
          "batches": seen, "windows_per_epoch": windows, "examples_per_row":
              examples / (seen * batch), "real_fraction": float(real.mean()),
          "real_fraction_min_batch": float(real.min()), "real_fraction_p5_batch":
              float(np.percentile(real, 5)), "loss_fraction": float(np.mean(loss))}


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--source", choices=["auto", "shared", "synthetic"], default="auto")
  p.add_argument("--cache-dir", default=str(REPO / "runs" / "bench" / "shared_cache"))
  p.add_argument("--contexts", type=int, nargs="+", default=[512, 1024])
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--rate", type=float, default=0.5)
  p.add_argument("--epochs", type=int, default=2)
  p.add_argument("--out", default=str(REPO / "bench" / "results" / "packing_bench.json"))
  args = p.parse_args()
  flags.FLAGS.mark_as_parsed()
  docs, special, desc = pipeline_bench.load_documents(args.source, args.cache_dir)
  print(f"documents: {desc}")
  runs = [measure(docs, special, context=ctx, batch=args.batch, rate=args.rate, pack=pack,
                  epochs=args.epochs) for ctx in args.contexts for pack in (True, False)]
  print(f"{'context':>7} {'pack':>5} {'real frac':>9} {'min batch':>9} {'p5 batch':>8} "
        f"{'loss frac':>9} {'ex/row':>6}")
  for r in runs:
    print(f"{r['context']:7d} {str(r['pack']):>5} {r['real_fraction']:9.4f} "
          f"{r['real_fraction_min_batch']:9.4f} {r['real_fraction_p5_batch']:8.4f} "
          f"{r['loss_fraction']:9.4f} {r['examples_per_row']:6.2f}")
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({"documents": desc, "runs": runs, "target_real_fraction": 0.95,
                             "date": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2) + "\n")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
