"""Sample workflows from scratch and measure how many are usable.

  python -m fimjax.generate --workdir DIR [--num 20] [--json] [--schema PATH] [--seed S]
                            [--temperature T] [--top-k K] [--top-p P] [--max-tokens N]
                            [--samples-dir DIR]

A sample starts at BOS and ends at EOS. Documents longer than the model's context are written in
windows: when the cache is full, the last half-context of tokens (with their true positions, no
BOS, as a training window that starts mid-document) becomes the prompt of the next window.

Counts (each implies the one before): `decoded` = ended with EOS within `--max-tokens` and decodes
cleanly (BPE: valid UTF-8; TCT: every token consumed); `parsed` = loads as YAML/JSON to a mapping
(YAML's `on:`-as-True mapped back); `schema_valid` = passes the JSON schema: the GitHub workflow
schema shipped with fimjax (fimjax/data/schemas), or `--schema PATH` for other documents.

DIR (or `--model DIR`): a run's workdir, its checkpoints/ folder (a copy will do) or one
checkpoints/<step> folder; no token cache is needed (`fimjax.api.load`).
"""

import json
import os
import sys

import numpy as np

from fimjax import api
from fimjax import cli
from fimjax import infill
from fimjax.inference import Sample, check, counts, generate_tokens, make_validator  # noqa: F401


def main(argv=None) -> int:
  p = cli.ArgumentParser(prog="python -m fimjax.generate", description=__doc__.split("\n")[0])
  p.add_argument("--workdir", "--model", dest="workdir", required=True,
                 help="a run's workdir, its checkpoints/ folder (or a copy) or one step folder")
  p.add_argument("--num", type=cli.number(low=1), default=20)
  p.add_argument("--json", action="store_true", help="print one JSON object")
  p.add_argument("--schema", default="", help="JSON schema the samples must pass (default: the "
                 "GitHub workflow schema shipped with fimjax)")
  p.add_argument("--step", type=int)
  p.add_argument("--batch-size", type=cli.number(low=1), default=16)
  p.add_argument("--samples-dir", help="write each sample as sample_NNN.yml here")
  infill.add_sampling_flags(p, temperature=1.0, max_tokens=1024)
  args = p.parse_args(sys.argv[1:] if argv is None else argv)
  if args.samples_dir and (problem := cli.output_error(args.samples_dir, folder=True)):
    print(f"error: --samples-dir {problem}", file=sys.stderr)  # before any sampling
    return 2
  try:
    validator = make_validator(args.schema, fix="fix --schema, or leave it out for the "
                               "workflow schema shipped with fimjax")
    model = api.load(args.workdir, step=args.step)
    samples = model.samples(args.num, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, max_tokens=args.max_tokens, seed=args.seed,
                            batch_size=args.batch_size, validator=validator)
    step = model.step
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
    return 1
  if args.samples_dir:
    os.makedirs(args.samples_dir, exist_ok=True)
    for i, s in enumerate(samples):
      with open(os.path.join(args.samples_dir, f"sample_{i:03d}.yml"), "w", encoding="utf-8") as f:
        f.write(s.text if s.text is not None else "")
  c = counts(samples)
  if args.json:
    print(json.dumps({**c, "step": step, "mean_tokens": float(np.mean(
        [len(s.tokens) for s in samples])) if samples else 0.0}))
  else:
    n = max(c["num"], 1)
    print(f"step {step}: {c['num']} samples; decoded {c['decoded']} ({c['decoded'] / n:.0%}), "
          f"parsed {c['parsed']} ({c['parsed'] / n:.0%}), schema-valid {c['schema_valid']} "
          f"({c['schema_valid'] / n:.0%})")
    for i, s in enumerate(samples):
      if s.error:
        print(f"  sample {i}: {s.error}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
