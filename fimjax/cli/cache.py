"""Build or describe a token cache (`python -m fimjax.data.cache`, the interface other tools use).

    python -m fimjax.data.cache build --input PATH [PATH...] --out DIR [--tokenizer auto|tct|bpe]
                                      [--val_fraction F] [--bpe_vocab_size N] [--schema_check]
                                      [--documents auto|workflow|any] [--jsonc] [--text_field F] ...
    python -m fimjax.data.cache info DIR [--json]

`build` defaults are the config's `data` section (fimjax/config_base.py).

`info` also verifies the cache (every file against the sizes and sha256 in meta.json, token ids
below the vocab) and names a damaged file. Errors are one line on stderr (exit status 2).
"""

import json
import pathlib
import sys
from typing import Sequence

from absl import flags

from fimjax import config_base
from fimjax.cli import common
from fimjax.data import corpus as corpus_lib
from fimjax.data import tokenizers as tok_lib
from fimjax.data.cache import build_cache
from fimjax.data.cache_format import (
  SPLITS,
  CacheDamaged,
  CacheError,
  TokenCache,
  load_cache,
  read_meta,
)

PROG = "python -m fimjax.data.cache"
_ERRORS = (CacheError, corpus_lib.CorpusError, tok_lib.TokenizerError)  # one line, exit 2


def _print_info(meta: dict, path, summary: bool = True) -> None:
  t = meta["tokens_per_document"]
  print(f"cache        {path}")
  print(
    f"tokenizer    {meta['tokenizer']} ({meta['tokenizer_version']}), vocab "
    f"{meta['vocab_size']}, pad {meta['pad_id']}, model vocab {meta['model_vocab_size']}"
  )
  for s in SPLITS:
    print(f"{s:<12} {meta['num_documents'][s]:>8} documents {meta['num_tokens'][s]:>11} tokens")
  print(
    f"per document mean {t['mean']:.1f}, median {t['median']:.0f}, p90 {t['p90']:.0f}, "
    f"max {t['max']}"
  )
  if summary:
    print(meta["summary"])
  phases = ", ".join(f"{k} {v:.1f} s" for k, v in meta.get("build_phases_s", {}).items())
  print(
    f"built        {meta['created']} in {meta['build_seconds']:.2f} s"
    f"{f' ({phases})' if phases else ''} from {', '.join(meta['inputs'])}"
  )


def _verified(tc: TokenCache) -> str:
  ids = f"token ids below {tc.meta['vocab_size']}"
  if not tc.checksummed:
    return (
      f"ok: dtypes, shapes, offsets, {ids} (no sizes or checksums: built before they were kept)"
    )
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


def define_build(fv: flags.FlagValues) -> None:
  d = config_base.base_config("tiny").data  # the defaults: the config's, for every model size
  flags.DEFINE_multi_string(
    "input",
    None,
    "workflow files/folders (.yml/.yaml/.json, "
    "recursive), tables (.jsonl, .jsonl.gz, .parquet, a saved Hugging "
    "Face dataset), gs:// URLs, 'default' or 'synthetic:N'; more may "
    "follow it (--input A B C)",
    flag_values=fv,
  )
  flags.DEFINE_string("out", None, "the cache folder", flag_values=fv)
  flags.DEFINE_enum("tokenizer", d.tokenizer, ("auto", "tct", "bpe"), "tokenizer", flag_values=fv)
  common.number(fv, "val_fraction", d.val_fraction, "share of documents held out", kind=float)
  common.number(fv, "bpe_vocab_size", d.bpe_vocab_size, "BPE vocabulary", low=1)
  flags.DEFINE_string("tct_module", d.tct_module, "TCT tokenizer module", flag_values=fv)
  flags.DEFINE_string(
    "schema_path", d.schema_path, "JSON schema ('' = the workflow schema)", flag_values=fv
  )
  common.number(fv, "max_file_bytes", d.max_file_bytes, "larger files are skipped", low=1)
  common.number(fv, "num_proc", None, "reader processes (default: auto)", low=1)
  flags.DEFINE_string("text_field", d.text_field, "the text column of table rows", flag_values=fv)
  flags.DEFINE_enum(
    "documents",
    d.documents,
    ("auto", "workflow", "any"),
    "workflow: mappings "
    f"with `jobs`; any: any mapping; auto: any for a TCT module other than "
    f"{corpus_lib.WORKFLOW_TCT}, else workflow",
    flag_values=fv,
  )
  flags.DEFINE_bool("jsonc", d.jsonc, "JSON may have comments and trailing commas", flag_values=fv)
  flags.DEFINE_bool(
    "schema_check", d.schema_check, "validate against the workflow schema", flag_values=fv
  )
  flags.DEFINE_bool("progress", True, "show progress (--noprogress: none)", flag_values=fv)


def build(fv: flags.FlagValues, more_inputs: list[str]) -> int:
  """`build`: read, tokenize and write a token cache."""
  try:
    build_cache(
      fv.input + more_inputs,
      fv.out,
      tokenizer=fv.tokenizer,
      tct_module=fv.tct_module,
      val_fraction=fv.val_fraction,
      bpe_vocab_size=fv.bpe_vocab_size,
      schema_check=fv.schema_check,
      schema_path=fv.schema_path,
      max_file_bytes=fv.max_file_bytes,
      documents=fv.documents,
      jsonc=fv.jsonc,
      text_field=fv.text_field,
      num_proc=fv.num_proc,
      progress=fv.progress,
    )
    _print_info(load_cache(fv.out).meta, fv.out, summary=False)  # build printed it
  except _ERRORS as e:
    common.error(e)
    return 2
  return 0


def define_info(fv: flags.FlagValues) -> None:
  flags.DEFINE_bool("json", False, "print meta.json", flag_values=fv)


def info(fv: flags.FlagValues, args: list[str]) -> int:
  """`info DIR`: describe and verify a token cache."""
  try:
    _info(args[0], fv.json)
  except _ERRORS as e:
    common.error(e)
    return 2
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  words = list(sys.argv[1:] if argv is None else argv)
  sub = words[0] if words else ""
  if sub == "build":
    return common.run(
      f"{PROG} build",
      __doc__,
      define_build,
      build,
      argv,
      skip=1,
      required=("input", "out"),
      more=True,
    )
  if sub == "info":
    return common.run(f"{PROG} info", __doc__, define_info, info, argv, skip=1, positional=("DIR",))
  if sub in ("-h", "--help", "-help"):
    print(__doc__.strip())
    return 0
  return common.fail(
    PROG,
    f"the commands are build and info, not {sub!r}"
    if sub
    else "missing the command: build or info",
  )
