"""Export cost for the `small` model and how far the NumPy reference is from the JAX model.

    python bench/export_bench.py [--repeat 3] [--length 256] [--out FILE]

Parameters are a fresh `small` init (fimjax.step.create_train_state; an export's cost depends on
the shapes only) written by the same function as `python -m fimjax.export` (`write_export`), in
float32 and bfloat16: size and seconds. Then the largest logit difference between
`fimjax/reference.py` on the export and `fimjax.model.apply` in float32 on the same params, for
an AR prompt and a FIM prompt (fimjax.sample's builders) of about `--length` tokens, beside the
largest logit (a difference means little next to tiny logits). The bf16 row compares the
reference on bf16 weights with JAX on the fp32 ones: what `--dtype bfloat16` costs.
Writes bench/results/export.json.
"""

import argparse
import os
import pathlib
import shutil
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench import common  # noqa: E402  pylint: disable=g-import-not-at-top
from fimjax import config_base  # noqa: E402
from fimjax import export  # noqa: E402
from fimjax import model as model_lib  # noqa: E402
from fimjax import reference  # noqa: E402
from fimjax import sample as sample_lib  # noqa: E402
from fimjax import sharding  # noqa: E402
from fimjax import step as step_lib  # noqa: E402
from fimjax.data import cache as cache_lib  # noqa: E402

VOCAB = 8197  # 8192 + 5 special ids, as configs/small.py's BPE
QUICK = {"repeat": 1, "length": 64}


def parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--repeat", type=int, default=3, help="exports timed per dtype")
  p.add_argument("--length", type=int, default=256, help="prompt tokens for the logit check")
  p.add_argument("--out", default=None, help="JSON path (default bench/results/export.json)")
  return p


def prompts(special: dict, length: int) -> dict:
  rng = np.random.default_rng(0)
  doc = rng.integers(0, special["bos"], length).tolist()
  cut = length // 2
  return {
    "AR": sample_lib.generate_prompt(special, doc[: length - 1]),
    "FIM": sample_lib.infill_prompt(doc[:cut], doc[cut + 8 :], special, positions="continued"),
  }


def run(quick: bool = False, **kw) -> dict:
  o = common.options(parser(), QUICK, quick, kw)
  config = config_base.base_config("small")
  config.model.dtype = "float32"  # the reference computes in fp32: compare like with like
  cfg = model_lib.ModelConfig.from_config(config, VOCAB)
  state = step_lib.create_train_state(config, VOCAB, sharding.make_mesh(config.mesh))
  params = jax.device_get(state["params"])
  del state  # the optimizer's moments: twice the params, not exported
  special = cache_lib.special_ids(8192, 8191)
  tok = {"type": "bpe", "version": "none (bench: random init, no tokenizer.json)"}
  out_dir = tempfile.mkdtemp(prefix="fimjax-export-bench-")
  rows, diffs = [], []
  try:
    for dtype in export.DTYPES:
      path = os.path.join(out_dir, dtype)
      write = lambda: export.write_export(  # noqa: E731
        path, cfg, params, model_vocab_size=VOCAB, special_ids=special, tokenizer=tok, dtype=dtype
      )
      secs, res = common.timed(write, o["repeat"])
      load, m = common.timed(lambda: reference.load(path), o["repeat"])  # noqa: B023
      mib = res["bytes"][export.WEIGHTS] / 2**20
      rows.append(
        common.row(
          f"export small ({dtype})",
          secs,
          "s",
          mib=mib,
          total_mib=sum(res["bytes"].values()) / 2**20,
        )
      )
      rows.append(common.row(f"reference load ({dtype})", load, "s"))
      for name, p in prompts(special, o["length"]).items():
        want = np.asarray(model_lib.apply(cfg, params, p.tokens[None], p.pos[None], p.gap[None]))[0]
        got = reference.forward(m, p.tokens, p.pos, p.gap)
        diffs.append(
          {
            "what": f"{name} prompt, {dtype} weights",
            "tokens": len(p.tokens),
            "max_abs_diff": float(np.abs(got - want).max()),
            "max_abs_logit": float(np.abs(want).max()),
          }
        )
  finally:
    shutil.rmtree(out_dir, ignore_errors=True)
  print(
    common.table(rows, ["what", "median", "min", "max", "mib", "total_mib"]) + " (seconds, MiB)"
  )
  print(common.table(diffs, ["what", "tokens", "max_abs_diff", "max_abs_logit"]))
  fp32 = [d["max_abs_diff"] for d in diffs if "float32" in d["what"]]
  print(
    f"reference vs JAX (fp32): max |logit diff| {max(fp32):.2e} (target < 1e-4: "
    f"{'met' if max(fp32) < 1e-4 else 'NOT met'}); small has {model_lib.num_params(cfg):,} "
    "parameters"
  )
  return {
    "bench": "export_bench",
    "config": "small",
    "params": model_lib.num_params(cfg),
    "rows": rows,
    "logit_diff": diffs,
    "targets": {"reference_matches_jax_fp32": max(fp32) < 1e-4},
  }


def main(argv=None):
  args = parser().parse_args(argv)
  common.save("export", run(**vars(args)), args.out)


if __name__ == "__main__":
  main()
