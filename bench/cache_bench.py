"""Token cache speed: whole build (with BPE training), each phase, and tokenization files/s.

    python bench/cache_bench.py [--input DIR ...] [--repeat 3] [--out FILE]

Every figure is the median (with spread) of `--repeat` runs. Targets (issue): the whole build of
the shared corpus under 30 s on 2 cores; tokenizing already-parsed files at >= 2,000 files/s.
"""

import argparse
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402  pylint: disable=g-import-not-at-top
from fimjax.data import cache, corpus  # noqa: E402
from fimjax.data import tokenizers as tok_lib  # noqa: E402

QUICK = {"repeat": 3, "default_corpus": False}
SYNTHETIC = "synthetic:3000"


def parser():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--input", nargs="+", default=[str(common.SHARED)])
  ap.add_argument("--tokenizer", default="auto", choices=["auto", "tct", "bpe"])
  ap.add_argument("--repeat", type=int, default=3, help="runs per figure (median and spread)")
  ap.add_argument(
    "--default_corpus",
    action=argparse.BooleanOptionalAction,
    default=True,
    help="also bench the synthetic corpus (synthetic:3000, a larger set)",
  )
  ap.add_argument("--out", default=str(common.RESULTS / "cache_bench.json"))
  return ap


def _tokenize(tok, docs):
  """Token ids of parsed documents in one batch call (BPE: Rust threads), as the build does."""
  tct = isinstance(tok, tok_lib.TctTokenizer)
  return tok.encode_batch([d.json_text if tct else d.text for d in docs])


def bench(inputs, tokenizer: str, repeat: int) -> dict:
  """Raw samples (seconds per run) of each phase, and the cache's summary."""
  r = {"inputs": inputs, "tokenizer": tok_lib.resolve(tokenizer)}
  r["read_parse_s"], corp = common.timed(lambda: corpus.read_corpus(inputs), repeat)
  r["files"], docs = corp.num_inputs, corp.documents
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / "cache"
    r["build_s"], meta = common.timed(
      lambda: cache.build_cache(
        inputs, out, tokenizer=tokenizer, progress=False, log=lambda s: None
      ),
      repeat,
    )
    r.update(
      summary=meta["summary"],
      num_documents=meta["num_documents"],
      num_tokens=meta["num_tokens"],
      tokens_per_document=meta["tokens_per_document"],
    )
    r["load_s"], tc = common.timed(lambda: cache.load_cache(out), repeat)
    r["load_train_documents_s"], _ = common.timed(lambda: tc.documents("train"), repeat)
  if r["tokenizer"] == "bpe":
    train = [d.text for d in docs if cache.split_of(d.sha256, 0.05) == 0]
    r["bpe_train_s"], tok = common.timed(lambda: tok_lib.BpeTokenizer.train(train, 8192), repeat)
  else:
    tok = tok_lib.TctTokenizer()
  # Tokenization of already-parsed files, the way the build does it (first call, then warm).
  r["tokenize_first_s"], ids = common.timed(lambda: _tokenize(tok, docs), 1)
  r["tokenize_cpu_s"] = []
  r["tokenize_s"], ids = common.timed(lambda: _tokenize(tok, docs), repeat, cpu=r["tokenize_cpu_s"])
  r["num_docs"], r["num_doc_tokens"] = len(docs), sum(map(len, ids))
  if r["tokenizer"] == "bpe":
    texts = [d.text for d in docs]
    r["tokenize_serial_s"], _ = common.timed(lambda: [tok.encode(t) for t in texts], 1)
  return r


def rows_of(r: dict) -> list[dict]:
  """The figures of one run of `bench`: (what, samples key, count for a rate, unit)."""
  name = (
    "shared corpus"
    if r["inputs"] == [str(common.SHARED)]
    else ", ".join(pathlib.Path(p).name for p in r["inputs"])
  )
  spec = [
    ("build (read+train+tokenize+write)", "build_s", None, "s"),
    ("build", "build_s", r["files"], "files/s"),
    ("load (memmap)", "load_s", None, "s"),
    ("read + parse", "read_parse_s", r["files"], "files/s"),
    ("BPE training", "bpe_train_s", None, "s"),
    ("tokenize, first call", "tokenize_first_s", r["num_docs"], "files/s"),
    ("tokenize, warm", "tokenize_s", r["num_docs"], "files/s"),
    ("tokenize, warm", "tokenize_s", r["num_doc_tokens"], "tokens/s"),
    ("tokenize, warm, per CPU-second", "tokenize_cpu_s", r["num_docs"], "files/CPU-s"),
    ("tokenize, one by one", "tokenize_serial_s", r["num_docs"], "files/s"),
  ]
  return [
    common.row(
      f"cache {what} [{name}, {r['tokenizer']}]",
      r[key] if count is None else common.rates(count, r[key]),
      unit,
      phase=what,
    )
    for what, key, count, unit in spec
    if key in r
  ]


def run(quick: bool = False, **kw) -> dict:
  o = common.options(parser(), QUICK, quick, kw)
  inputs = o["input"]
  if inputs == [str(common.SHARED)] and not common.SHARED.is_dir():
    print(f"shared corpus not found at {common.SHARED}: benching the embedded copy instead")
    inputs = ["default"]
  for p in inputs:
    if p not in ("default", SYNTHETIC) and not pathlib.Path(p).exists():
      raise FileNotFoundError(f"input not found: {p} (pass --input DIR)")
  load = common.load_avg()
  runs = [bench(inputs, o["tokenizer"], o["repeat"])]
  if o["default_corpus"] and SYNTHETIC not in inputs:
    runs.append(bench([SYNTHETIC], o["tokenizer"], 1))
  print(
    f"cache bench on {common.cores()} CPUs (load average at start {load[0]:.1f}), "
    f"median of {o['repeat']}"
  )
  rows = []
  for r in runs:
    print(f"\n{', '.join(r['inputs'])} [{r['tokenizer']}]: {r['summary']}")
    rows += rows_of(r)
    for x in rows_of(r):
      fmt = "12.3f" if x["unit"] == "s" else "12,.0f"
      print(f"  {x['phase']:<36} {x['median']:{fmt}} {x['unit']:<11} ±{x['spread']:.0%}")
  build, tokenize = (
    next(x for x in rows if x["phase"] == p and x["unit"] == u)
    for p, u in (("build (read+train+tokenize+write)", "s"), ("tokenize, warm", "files/s"))
  )
  targets = {
    "build_under_30s": build["median"] < 30.0,
    "tokenize_at_least_2000_files_per_s": tokenize["median"] >= 2000,
  }
  print(f"\ntargets: {targets}")
  return {
    "bench": "cache_bench",
    "rows": rows,
    "targets": targets,
    "load_avg_at_start": load,
    "runs": runs,
  }


def main(argv=None) -> int:
  args = parser().parse_args(argv)
  try:
    res = run(**vars(args))
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  common.save("cache_bench", res, args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
