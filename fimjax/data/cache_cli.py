"""CLI of the token cache (run as `python -m fimjax.data.cache`, the interface other tools use).

    python -m fimjax.data.cache build --input PATH [PATH...] --out DIR [--tokenizer auto|tct|bpe]
                                      [--val-fraction F] [--bpe-vocab-size N] [--schema-check]
                                      [--documents auto|workflow|any] [--jsonc] [--text-field F] ...
    python -m fimjax.data.cache info DIR [--json]

`info` also verifies the cache (every file against the sizes and sha256 in meta.json, token ids
below the vocab) and names a damaged file. Errors are one line on stderr (exit status 2).
"""

import argparse
import json
import pathlib
import sys
from typing import Sequence

from fimjax.data import corpus as corpus_lib
from fimjax.data import tokenizers as tok_lib
from fimjax.data.cache import build_cache
from fimjax.data.cache_format import (SPLITS, CacheDamaged, CacheError, TokenCache, load_cache,
                                      read_meta)


def _print_info(meta: dict, path, summary: bool = True) -> None:
  t = meta["tokens_per_document"]
  print(f"cache        {path}")
  print(f"tokenizer    {meta['tokenizer']} ({meta['tokenizer_version']}), vocab {meta['vocab_size']}, "
        f"pad {meta['pad_id']}, model vocab {meta['model_vocab_size']}")
  for s in SPLITS:
    print(f"{s:<12} {meta['num_documents'][s]:>8} documents {meta['num_tokens'][s]:>11} tokens")
  print(f"per document mean {t['mean']:.1f}, median {t['median']:.0f}, p90 {t['p90']:.0f}, max {t['max']}")
  if summary:
    print(meta["summary"])
  print(f"built        {meta['created']} in {meta['build_seconds']:.2f} s from {', '.join(meta['inputs'])}")


def _verified(tc: TokenCache) -> str:
  ids = f"token ids below {tc.meta['vocab_size']}"
  if not tc.checksummed:
    return f"ok: dtypes, shapes, offsets, {ids} (no sizes or checksums: built before they were kept)"
  return f"ok: {len(tc.checksummed)} files match the sizes and sha256 in meta.json; {ids}"


def _info(path: str, as_json: bool) -> None:
  """Describes the cache, then its verification; a damaged file is named on stderr (raised)."""
  try:
    tc = load_cache(path, checksums=True)
  except CacheDamaged as e:  # meta.json is readable: describe the cache, then name the file
    meta = read_meta(pathlib.Path(path))
    try:
      if as_json:
        print(json.dumps(meta, indent=1, ensure_ascii=False))
      else:
        _print_info(meta, path)
    except (KeyError, TypeError):  # meta.json lacks a field: the error line still names the file
      pass
    if not as_json:
      print(f"verified     DAMAGED: {e.file} ({e.why})")
    raise
  if as_json:
    print(json.dumps(tc.meta, indent=1, ensure_ascii=False))
  else:
    _print_info(tc.meta, path)
    print(f"verified     {_verified(tc)}")


def main(argv: Sequence[str] | None = None) -> int:
  ap = argparse.ArgumentParser(prog="python -m fimjax.data.cache", description="Build or describe a fimjax token cache.")
  sub = ap.add_subparsers(dest="cmd", required=True)
  b = sub.add_parser("build", help="read, tokenize and write a token cache")
  b.add_argument("--input", nargs="+", required=True, metavar="PATH",
                 help="workflow files/folders (.yml/.yaml/.json, recursive), tables (.jsonl, "
                 ".jsonl.gz, .parquet, a saved Hugging Face dataset), gs:// URLs, 'default' or "
                 "'synthetic:N'")
  b.add_argument("--out", required=True, metavar="DIR")
  b.add_argument("--tokenizer", default="auto", choices=["auto", "tct", "bpe"])
  for flag, typ, default in (("--val-fraction", float, 0.05), ("--bpe-vocab-size", int, 8192),
                             ("--tct-module", str, "tct_github_workflow"), ("--schema-path", str, ""),
                             ("--max-file-bytes", int, 1_000_000), ("--num-proc", int, None),  # None = auto
                             ("--text-field", str, "content")):
    b.add_argument(flag, type=typ, default=default)
  b.add_argument("--documents", default="auto", choices=["auto", "workflow", "any"],
                 help="workflow: mappings with `jobs`; any: any mapping; auto: any for a TCT "
                 "module other than tct_github_workflow, else workflow")
  b.add_argument("--jsonc", action="store_true", help="JSON may have comments and trailing commas")
  b.add_argument("--schema-check", action="store_true", help="validate against the workflow schema")
  b.add_argument("--no-progress", action="store_true")
  i = sub.add_parser("info", help="describe and verify a token cache")
  i.add_argument("dir")
  i.add_argument("--json", action="store_true", help="print meta.json")
  args = ap.parse_args(argv)
  try:
    if args.cmd == "build":
      build_cache(args.input, args.out, tokenizer=args.tokenizer, tct_module=args.tct_module,
                  val_fraction=args.val_fraction, bpe_vocab_size=args.bpe_vocab_size,
                  schema_check=args.schema_check, schema_path=args.schema_path,
                  max_file_bytes=args.max_file_bytes, documents=args.documents, jsonc=args.jsonc,
                  text_field=args.text_field, num_proc=args.num_proc, progress=not args.no_progress)
      _print_info(load_cache(args.out).meta, args.out, summary=False)  # build printed it
    else:
      _info(args.dir, args.json)
  except (CacheError, corpus_lib.CorpusError, tok_lib.TokenizerError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0

