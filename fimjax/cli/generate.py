"""Sample workflows from scratch and measure how many are usable.

  python -m fimjax.generate --workdir DIR [--num 20] [--json] [--schema PATH] [--seed S]
                            [--temperature T] [--top_k K] [--top_p P] [--max_tokens N]
                            [--samples_dir DIR]

A sample starts at BOS and ends at EOS. Documents longer than the model's context are written in
windows: when the cache is full, the last half-context of tokens (with their true positions, no
BOS, as a training window that starts mid-document) becomes the prompt of the next window.

Counts (each implies the one before): `decoded` = ended with EOS within `--max_tokens` and decodes
cleanly (BPE: valid UTF-8; TCT: every token consumed); `parsed` = loads as YAML/JSON to a mapping
(YAML's `on:`-as-True mapped back); `schema_valid` = passes the JSON schema: the GitHub workflow
schema shipped with fimjax (fimjax/data/schemas), or `--schema PATH` for other documents.

DIR (or `--model DIR`): a run's workdir, its checkpoints/ folder (a copy will do) or one
checkpoints/<step> folder; no token cache is needed (`fimjax.api.load`).
"""

import json
import os

from absl import flags
import numpy as np

from fimjax import api
from fimjax.cli import common
from fimjax.inference import counts, make_validator

PROG = "python -m fimjax.generate"


def define(fv: flags.FlagValues) -> None:
  common.model_flags(fv)
  common.number(fv, "num", 20, "samples to write", low=1)
  flags.DEFINE_bool("json", False, "print one JSON object", flag_values=fv)
  flags.DEFINE_string(
    "schema",
    "",
    "JSON schema the samples must pass (default: the GitHub workflow schema shipped with fimjax)",
    flag_values=fv,
  )
  common.number(fv, "batch_size", 16, "samples per sampler call", low=1)
  flags.DEFINE_string(
    "samples_dir", None, "write each sample as sample_NNN.yml here", flag_values=fv
  )
  common.sampling_flags(fv, temperature=1.0, max_tokens=1024)


def body(fv: flags.FlagValues, args: list[str]) -> int:
  del args
  if fv.samples_dir and (problem := common.output_error(fv.samples_dir, folder=True)):
    common.error(f"--samples_dir {problem}")  # before any sampling
    return 2
  try:
    validator = make_validator(
      fv.schema, fix="fix --schema, or leave it out for the workflow schema shipped with fimjax"
    )
    model = api.load(fv.workdir, step=fv.step)
    samples = model.samples(
      fv.num,
      temperature=fv.temperature,
      top_k=fv.top_k,
      top_p=fv.top_p,
      max_tokens=fv.max_tokens,
      seed=fv.seed,
      batch_size=fv.batch_size,
      validator=validator,
    )
    step = model.step
  except (FileNotFoundError, ValueError) as e:
    common.error(common.first_line(e))
    return 1
  if fv.samples_dir:
    os.makedirs(fv.samples_dir, exist_ok=True)
    for i, s in enumerate(samples):
      with open(os.path.join(fv.samples_dir, f"sample_{i:03d}.yml"), "w", encoding="utf-8") as f:
        f.write(s.text if s.text is not None else "")
  c = counts(samples)
  if fv.json:
    print(
      json.dumps(
        {
          **c,
          "step": step,
          "mean_tokens": float(np.mean([len(s.tokens) for s in samples])) if samples else 0.0,
        }
      )
    )
  else:
    n = max(c["num"], 1)
    print(
      f"step {step}: {c['num']} samples; decoded {c['decoded']} ({c['decoded'] / n:.0%}), "
      f"parsed {c['parsed']} ({c['parsed'] / n:.0%}), schema-valid {c['schema_valid']} "
      f"({c['schema_valid'] / n:.0%})"
    )
    for i, s in enumerate(samples):
      if s.error:
        print(f"  sample {i}: {s.error}")
  return 0


def main(argv=None) -> int:
  return common.run(PROG, __doc__, define, body, argv, required=("workdir",))
