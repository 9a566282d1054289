"""Sample workflows from scratch and measure how many are usable.

  python -m fimjax.generate --workdir DIR [--num 20] [--json] [--schema PATH] [--seed S]
                            [--temperature T] [--top-k K] [--top-p P] [--max-tokens N]
                            [--samples-dir DIR]

A sample starts at BOS and ends at EOS. Documents longer than the model's context are written in
windows: when the cache is full, the last half-context of tokens (with their true positions, no
BOS, as a training window that starts mid-document) becomes the prompt of the next window.

Counts (each implies the one before): `decoded` = ended with EOS within `--max-tokens` and decodes
cleanly (BPE: valid UTF-8; TCT: every token consumed); `parsed` = loads as YAML/JSON to a mapping
(YAML's `on:`-as-True mapped back); `schema_valid` = passes the workflow JSON schema.
"""

import dataclasses
import json
import os
import sys

import numpy as np

from fimjax import cli
from fimjax import sample as sample_lib
from fimjax.data import corpus


@dataclasses.dataclass
class Sample:
  tokens: list[int]
  finished: bool  # ended with EOS
  text: str | None = None
  decoded: bool = False
  parsed: bool = False
  schema_valid: bool = False
  error: str = ""


def generate_tokens(cfg, params, special_ids, model_vocab_size, num: int, *, sc, max_tokens: int,
                    seed: int = 0, batch_size: int = 16) -> list[tuple[list[int], bool]]:
  """(document tokens, ended with EOS) for `num` samples of at most `max_tokens` tokens."""
  window = min(sc.max_new, cfg.context - 1)
  keep = cfg.context // 2
  out = []
  for b0 in range(0, num, batch_size):
    n = min(batch_size, num - b0)
    # done[i]: None while sampling, True after EOS, False when out of tokens (not decoded).
    docs, done = [[] for _ in range(n)], [None if max_tokens > 0 else False] * n
    chunk = 0
    while any(d is None for d in done):
      rows = [i for i in range(n) if done[i] is None]
      prompts = []
      for i in rows:
        start = max(0, len(docs[i]) - keep + 1)  # BOS + up to keep-1 tokens, or keep tokens
        ctx = docs[i][start:] if start == 0 else docs[i][start - 1:]
        prompts.append(sample_lib.generate_prompt(special_ids, ctx, 0 if start == 0 else start))
      room = cfg.context - max(len(p.tokens) for p in prompts)
      budget = max(len(docs[i]) for i in rows)
      step_sc = dataclasses.replace(sc, max_new=min(window, room, max(max_tokens - budget, 1)))
      pad = batch_size - len(prompts)  # a fixed batch: one compilation
      res = sample_lib.sample(cfg, params, prompts + prompts[:1] * pad, special_ids,
                              model_vocab_size, mode=sample_lib.GENERATE, sc=step_sc,
                              seed=seed * 100_003 + b0 * 1009 + chunk)
      chunk += 1
      for j, i in enumerate(rows):
        docs[i].extend(res.tokens[j])
        if res.stopped[j]:
          done[i] = True
        elif len(docs[i]) >= max_tokens:
          docs[i], done[i] = docs[i][:max_tokens], False  # ran out of tokens: leaves the loop
    out.extend((d, f is True) for d, f in zip(docs, done))
  return out


def check(sample: Sample, tokenizer, validator) -> Sample:
  """Fills decoded / parsed / schema_valid of a sample."""
  if not sample.finished:
    sample.error = "no EOS within the token limit"
    return sample
  try:
    if getattr(tokenizer, "name", "") == "tct":
      text, consumed, total = tokenizer.decode_full(sample.tokens)
      if consumed != total:
        raise ValueError(f"TCT consumed {consumed} of {total} tokens")
    else:
      text = tokenizer.decode(sample.tokens)
      if "\ufffd" in text:
        raise ValueError("invalid UTF-8")
    sample.text, sample.decoded = text, True
  except Exception as e:  # pylint: disable=broad-except  # any decoder failure counts the same
    sample.error = f"decode: {e}"
    return sample
  try:
    obj = corpus.load_workflow(text, json_file=text.lstrip().startswith("{"))
    if not isinstance(obj, dict):
      raise ValueError(f"a {type(obj).__name__}, not a mapping")
    obj = json.loads(corpus.to_json(obj))  # JSON-compatible, as the schema sees it
    sample.parsed = True
  except Exception as e:  # pylint: disable=broad-except  # YAML/JSON errors of many types
    sample.error = f"parse: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return sample
  if validator is not None:
    errors = sorted(validator.iter_errors(obj), key=lambda x: list(x.path))
    sample.schema_valid = not errors
    if errors:
      sample.error = f"schema: {errors[0].message[:200]}"
  return sample


def make_validator(schema_path: str = ""):
  return corpus.schema_validator(schema_path)


def counts(samples: list[Sample]) -> dict:
  return {"num": len(samples), "decoded": sum(s.decoded for s in samples),
          "parsed": sum(s.parsed for s in samples),
          "schema_valid": sum(s.schema_valid for s in samples)}


def generate(cfg, params, cache, num: int, *, sc, max_tokens: int, seed: int = 0,
             validator=None, batch_size: int = 16) -> list[Sample]:
  toks = generate_tokens(cfg, params, cache.special_ids, cache.model_vocab_size, num, sc=sc,
                         max_tokens=max_tokens, seed=seed, batch_size=min(batch_size, num))
  tokenizer = cache.tokenizer()
  return [check(Sample(t, f), tokenizer, validator) for t, f in toks]


def main(argv=None) -> int:
  from fimjax import infill  # pylint: disable=g-import-not-at-top
  p = cli.ArgumentParser(prog="python -m fimjax.generate", description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--num", type=cli.number(low=1), default=20)
  p.add_argument("--json", action="store_true", help="print one JSON object")
  p.add_argument("--schema", default="", help="workflow JSON schema (default: the shared copy)")
  p.add_argument("--step", type=int)
  p.add_argument("--batch-size", type=cli.number(low=1), default=16)
  p.add_argument("--samples-dir", help="write each sample as sample_NNN.yml here")
  infill.add_sampling_flags(p, temperature=1.0, max_tokens=1024)
  args = p.parse_args(sys.argv[1:] if argv is None else argv)
  if args.samples_dir and (problem := cli.output_error(args.samples_dir, folder=True)):
    print(f"error: --samples-dir {problem}", file=sys.stderr)  # before any sampling
    return 2
  try:
    validator = make_validator(args.schema)
    _, cache, cfg, params, step = infill.load_model(args.workdir, args.step)
    sc = sample_lib.SampleConfig(args.temperature, args.top_k, args.top_p, cfg.context - 1)
    samples = generate(cfg, params, cache, args.num, sc=sc, max_tokens=args.max_tokens,
                       seed=args.seed, validator=validator, batch_size=args.batch_size)
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
