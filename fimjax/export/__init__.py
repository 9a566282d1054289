"""Export a trained run as files another framework loads (no jax, orbax or token cache needed).

  python -m fimjax.export --workdir DIR --out DIR [--step N] [--dtype float32|bfloat16]

(the command: fimjax/cli/export.py). Writes `model.safetensors` (flat names
`blocks.0.attn.wq`..., shapes as in JAX), `config.json` (every architecture field, the forward
pass step by step, the special ids by name, how `pos` and `gap` are built for AR, PSM and SPM
prompts with worked examples, the training step and its eval metrics), `tokenizer.json` (BPE:
the run's, with the specials added by name at the model's ids; a TCT run has none: its ids are
fixed by the module named in config.json) and a `README.md` model card. `fimjax/reference.py` is
the NumPy forward pass that reads them. float32 (default) keeps the trained fp32 parameters
exactly; bfloat16 halves the file (bench/export_bench.py).
"""

import json
import os
import pathlib
import re
import time

import jax
import ml_dtypes
import numpy as np
from tokenizers import AddedToken, Tokenizer

from fimjax import api
from fimjax.export import card
from fimjax import checkpoint
from fimjax import metrics
from fimjax.api import BLOCK_NAMES, load_export, model_config, unflatten_params  # noqa: F401
from fimjax.data import fim

WEIGHTS, CONFIG, TOKENIZER, CARD = "model.safetensors", "config.json", "tokenizer.json", "README.md"
FORMAT, FORMAT_VERSION = "fimjax-export", 1
DTYPES = ("float32", "bfloat16")
# Model ids of the specials (fimjax.data.cache.special_ids) under explicit names. There is no
# prefix marker: a prompt starts with its prefix (after <|bos|> when at the document start).
TOKEN_NAMES = {
  "pad": "<|pad|>",
  "bos": "<|bos|>",
  "eos": "<|eos|>",
  "mask": "<|fim_suffix|>",
  "mid": "<|fim_middle|>",
  "eom": "<|eom|>",
}
TENSORS = {  # flat name pattern: layout (D d_model, H heads, K head_dim, F mlp hidden)
  "embed": "[vocab_size, D] token embedding (rows >= model_vocab_size are padding)",
  "gap_embed": "[context + 1, D] learned embedding of the gap input",
  **{f"blocks.{{i}}.attn.{w}": "[D, H, K]" for w in ("wq", "wk", "wv")},
  "blocks.{i}.attn.wo": "[H, K, D]",
  "blocks.{i}.mlp.w_up": "[D, F]",
  "blocks.{i}.mlp.w_down": "[F, D]",
  "head": "[D, vocab_size] output head (untied)",
}
FORWARD = [  # the spec fimjax/reference.py follows, step by step
  "rmsnorm(x) = x / sqrt(mean(x**2, last axis) + 1e-6), no weight, computed in fp32",
  "x = rmsnorm(embed[tokens] + gap_embed[clip(gap, 0, context)])",
  "per block: h = rmsnorm(x); q, k, v = h @ wq, wk, wv  (each [L, H, K])",
  "q = rope(rmsnorm(q), pos) * head_dim**-0.5; k = rope(rmsnorm(k), pos)  (QK-norm over K)",
  "rope, half-split: f_i = rope_base**(-i / (K/2)), a = pos * f_i, x1, x2 = x[:K/2], x[K/2:] "
  "-> [x1 cos a - x2 sin a, x2 cos a + x1 sin a]",
  "attention: softmax_j(q_i . k_j) over keys j <= i with segment_ids[j] == segment_ids[i] "
  "(all one segment for a single prompt); o_i = sum_j p_ij v_j",
  "x = x + einsum('lhk,hkd->ld', o, wo); x = x + relu(rmsnorm(x) @ w_up)**2 @ w_down",
  "logits = logit_softcap * tanh((rmsnorm(x) @ head) / logit_softcap)  (no cap when 0)",
  "use logits[..., :model_vocab_size]; sampling keeps tokenizer ids (< bos, not pad) and the "
  "stop token (<|eom|> infilling, <|eos|> generating)",
]


# ------------------------------------------------------------------------------------ weights


def flatten_params(params: dict, dtype: str = "float32") -> dict[str, np.ndarray]:
  """The model's nested params (embed, gap_embed, block_i/{wq...}, head) -> flat named arrays."""
  np_dtype = np.float32 if dtype == "float32" else ml_dtypes.bfloat16
  cast = lambda a: np.ascontiguousarray(np.asarray(a, np.float32).astype(np_dtype))  # noqa: E731
  out = {"embed": cast(params["embed"]), "gap_embed": cast(params["gap_embed"])}
  for i in range(sum(k.startswith("block_") for k in params)):
    for w, flat in BLOCK_NAMES.items():
      out[f"blocks.{i}.{flat}"] = cast(params[f"block_{i}"][w])
  out["head"] = cast(params["head"])
  return out


# ------------------------------------------------------------------------------------- config


def _layout_examples(positions: str) -> dict:
  """Worked training examples (inputs and targets) of a 4-token document, made by the training
  code itself (`fim.fim_example` on token names), so they cannot drift from it."""
  sp = {k: TOKEN_NAMES[k] for k in fim.SPECIAL_NAMES}
  window = [sp["bos"], "p1", "m1", "m2", "s1", sp["eos"]]
  out = {}
  for name, kind in (("AR", fim.AR), ("PSM", fim.PSM), ("SPM", fim.SPM)):
    ex = fim.fim_example(window, 2, 2, kind, sp, positions=positions)
    out[name] = {k: ex[k] for k in ("tokens", "pos", "gap", "targets")}
  return out


def input_spec(positions: str) -> dict:
  """How `tokens`, `pos`, `gap` (and `segment_ids`) are built, for the run's `fim.positions`."""
  mid_pos = {
    "collapsed": "p",
    "continued": "p + 1 + i",
    "sequential": "start + its index in the sequence",
  }[positions]
  return {
    "shapes": "tokens, pos, gap, segment_ids: int32 [batch, length], length <= context",
    "fim_positions": positions,
    "AR": "[<|bos|>] doc: pos = start, start+1, ... (<|bos|> is position 0, document token k "
    "is at k + 1; a window starting inside a document has no <|bos|> and starts at its "
    "true position), gap = 0",
    "PSM": "[<|bos|>] prefix <|fim_suffix|> suffix [<|eos|>] <|fim_middle|> middle <|eom|>",
    "SPM": "<|fim_suffix|> suffix [<|eos|>] [<|bos|>] prefix <|fim_middle|> middle <|eom|>",
    "bos_eos": "<|bos|> only when the prefix starts the document; <|eos|> only when the suffix "
    "ends it (a suffix cut before the document's end has none)",
    "pos_prefix_suffix": "prefix token i at start + i; p = start + len(prefix) is the hole's "
    "position: <|fim_suffix|> at p, suffix token j at p + 1 + j (the "
    "suffix does not reveal the hole's length); the same in SPM",
    "pos_middle": f"<|fim_middle|> at p, middle token i at {mid_pos}"
    + (
      " (every cell, prefix and suffix too, numbered in sequence order)"
      if positions == "sequential"
      else ""
    ),
    "gap": "0 before <|fim_middle|>; <|fim_middle|> 1, middle token i at 2 + i",
    "prompt": "an infill prompt is the PSM sequence up to and including <|fim_middle|> (empty "
    "middle); a generation prompt is [<|bos|>] doc",
    "decoding": "each generated token is fed at pos = previous pos + "
    f"{0 if positions == 'collapsed' else 1} and gap = previous gap + 1 when "
    "infilling (stop at <|eom|>); pos + 1 and gap 0 when generating (stop at "
    "<|eos|>)",
    "segment_ids": "optional: attention within equal ids (packed rows); a prompt needs none",
    "examples": _layout_examples(positions),
  }


def architecture(cfg, model_vocab_size: int) -> dict:
  """The architecture fields of a `model.ModelConfig` (what `model_config` reads back)."""
  return {
    "d_model": cfg.d_model,
    "num_layers": cfg.num_layers,
    "num_heads": cfg.num_heads,
    "head_dim": cfg.d_model // cfg.num_heads,
    "mlp_ratio": cfg.mlp_ratio,
    "mlp_hidden": cfg.mlp_ratio * cfg.d_model,
    "mlp_activation": "relu_squared",
    "vocab_size": cfg.vocab_size,
    "model_vocab_size": model_vocab_size,
    "context": cfg.context,
    "gap_vocab_size": cfg.context + 1,
    "rope_base": cfg.rope_base,
    "rope_on": "pos",
    "rope_convention": "half-split",
    "logit_softcap": cfg.logit_softcap,
    "norm": "rmsnorm",
    "norm_eps": 1e-6,
    "norm_weights": False,
    "qk_norm": True,
    "tied_embeddings": False,
    "biases": False,
    "attention": "causal within a segment",
    "attention_scale": (cfg.d_model // cfg.num_heads) ** -0.5,
    "compute_dtype": cfg.dtype,
    "param_dtype": cfg.param_dtype,
  }


# ---------------------------------------------------------------------------------- tokenizer


def tokenizer_with_specials(bpe_json: str, special_ids: dict) -> str:
  """The BPE tokenizer.json with the specials added as special tokens at the model's ids.

  Ids the model has between the BPE's last token and PAD (a BPE that learned fewer merges than
  asked) are filled with `<|reserved_k|>` so that every name lands on its id.
  """
  tok = Tokenizer.from_str(bpe_json)
  for name, want in sorted(special_ids.items(), key=lambda kv: kv[1]):
    if want < tok.get_vocab_size():
      raise ValueError(
        f"special {name!r} has id {want}, inside the BPE's "
        f"{tok.get_vocab_size()} tokens: the run's cache is inconsistent; "
        "rebuild the cache and retrain"
      )
    while tok.get_vocab_size() < want:
      tok.add_special_tokens(
        [AddedToken(f"<|reserved_{tok.get_vocab_size()}|>", special=True, normalized=False)]
      )
    tok.add_special_tokens([AddedToken(TOKEN_NAMES[name], special=True, normalized=False)])
    if tok.token_to_id(TOKEN_NAMES[name]) != want:
      raise ValueError(
        f"tokenizers placed {TOKEN_NAMES[name]} at id "
        f"{tok.token_to_id(TOKEN_NAMES[name])}, not the model's {want}"
      )
  return tok.to_str(pretty=True)


# -------------------------------------------------------------------------------------- write


def _write_file(path: str, write) -> None:
  """Writes through a temporary name: a reader never sees half a file."""
  tmp = f"{path}.tmp-{os.getpid()}"
  write(tmp)
  os.chmod(tmp, 0o644)  # safetensors makes its file private (0600): an export is to share
  os.replace(tmp, path)


def write_export(
  out: str,
  cfg,
  params: dict,
  *,
  model_vocab_size: int,
  special_ids: dict,
  tokenizer: dict,
  tokenizer_json: str | None = None,
  positions: str = "continued",
  step: int = 0,
  training: dict | None = None,
  dtype: str = "float32",
) -> dict:
  """Writes the export of `params` (the model's nested dict) to `out`; returns
  {"seconds", "bytes": {file: size}}. `tokenizer` describes it (type, version...);
  `tokenizer_json` is the BPE file (None: no tokenizer.json)."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  if dtype not in DTYPES:
    raise ValueError(f"--dtype {dtype}: use one of {', '.join(DTYPES)}")
  t0 = time.perf_counter()
  os.makedirs(out, exist_ok=True)
  tensors = flatten_params(params, dtype)
  n_params = sum(a.size for a in tensors.values())
  cj = {
    "format": FORMAT,
    "format_version": FORMAT_VERSION,
    "step": int(step),
    "weights_dtype": dtype,
    "architecture": architecture(cfg, model_vocab_size),
    "tensors": {
      k: {"shape": list(a.shape), "layout": TENSORS[re.sub(r"\.\d+\.", ".{i}.", k)]}
      for k, a in tensors.items()
    },
    "forward": FORWARD,
    "special_ids": dict(special_ids),
    "special_tokens": {TOKEN_NAMES[k]: int(v) for k, v in special_ids.items()},
    "tokenizer": tokenizer,
    "inputs": input_spec(positions),
    "num_params": int(n_params),
  }
  if training:
    cj["training"] = training
  files = [
    (WEIGHTS, lambda p: save_file(tensors, p, {"format": FORMAT, "step": str(step)})),
    (CONFIG, lambda p: pathlib.Path(p).write_text(_dumps(cj) + "\n", "utf-8")),
    (CARD, lambda p: pathlib.Path(p).write_text(card.model_card(cj, n_params), "utf-8")),
  ]
  if tokenizer_json is not None:
    text = tokenizer_with_specials(tokenizer_json, special_ids)
    files.append((TOKENIZER, lambda p: pathlib.Path(p).write_text(text, "utf-8")))
  elif os.path.exists(os.path.join(out, TOKENIZER)):
    os.remove(os.path.join(out, TOKENIZER))  # an earlier export's: not this model's ids
  for name, write in files:
    _write_file(os.path.join(out, name), write)
  return {
    "seconds": time.perf_counter() - t0,
    "bytes": {name: os.path.getsize(os.path.join(out, name)) for name, _ in files},
  }


def _dumps(obj, indent: str = "") -> str:
  """JSON with one key per line and lists of numbers or strings on one line (readable shapes
  and worked examples)."""
  inner = indent + "  "
  if isinstance(obj, dict) and obj:
    items = [f"{inner}{json.dumps(k)}: {_dumps(v, inner)}" for k, v in obj.items()]
    return "{\n" + ",\n".join(items) + f"\n{indent}}}"
  if isinstance(obj, list) and (
    any(isinstance(v, (dict, list)) for v in obj) or len(json.dumps(obj)) > 100
  ):
    return "[\n" + ",\n".join(inner + _dumps(v, inner) for v in obj) + f"\n{indent}]"
  return json.dumps(obj, ensure_ascii=False)


# ---------------------------------------------------------------------------------------- run

METRIC_PREFIXES = ("eval_", "infill_", "gen_")


def step_metrics(workdir: str, step: int) -> dict:
  """The evaluation figures logged at `step` in metrics.jsonl, and the train loss there ({}
  for a copied checkpoint without its log)."""
  try:
    records = metrics.read_metrics(checkpoint.local_dir(workdir))
  except (OSError, ValueError):
    return {}
  return {
    ("train_loss" if k == "loss" else k): float(v)
    for r in records
    if r.get("step") == step
    for k, v in r.items()
    if isinstance(v, (int, float)) and (k.startswith(METRIC_PREFIXES) or k == "loss")
  }


def export_run(path: str, out: str, *, step: int | None = None, dtype: str = "float32") -> dict:
  """Exports a checkpoint (`fimjax.load`'s `path`: a workdir, its checkpoints/ folder or a copy,
  or one step folder; best by validation loss unless `step`); write_export's result with the
  step. Needs no token cache: the checkpoint carries its tokenizer."""
  m = api.load(path, step=step)
  config, meta, tok_obj = m.config, m.meta or {}, m.tokenizer
  if tok_obj.name == "bpe":
    tok_json = tok_obj.to_json()
    tok = {
      "type": "bpe",
      "file": TOKENIZER,
      "version": tok_obj.version,
      "sha256": m.tokenizer_id.split(":", 1)[1],
      "vocab_size": tok_obj.vocab_size,
    }
  else:
    tok = {
      "type": "tct",
      "module": tok_obj.module_name,
      "version": tok_obj.version,
      "vocab_size": tok_obj.vocab_size,
      "note": "TCT ids are fixed by this module version; no tokenizer.json",
    }
    tok_json = None
  metrics = step_metrics(path, m.step) or {
    k: float(v) for k, v in (m.eval_metrics or {}).items() if isinstance(v, (int, float))
  }
  training = {
    "config_name": config.get("name", "?"),
    "steps": int(config.train.steps),
    "corpus": str(config.data.corpus),
    "documents": meta.get("num_documents"),
    "tokens": meta.get("num_tokens"),
    "fim": {
      k: config.fim[k] for k in ("rate", "span_policy", "positions", "eom_weight", "spm_rate")
    },
    "metrics": metrics,
  }
  params = jax.device_get(m.params)
  res = write_export(
    out,
    m.model_config,
    params,
    model_vocab_size=m.model_vocab_size,
    special_ids=m.special_ids,
    tokenizer=tok,
    tokenizer_json=tok_json,
    positions=str(config.fim.positions),
    step=m.step,
    training=training,
    dtype=dtype,
  )
  return {**res, "step": m.step}
