"""The Python API: load a trained model from a run, a checkpoint or a copy of one, and use it.

  import fimjax
  m = fimjax.load("runs/tiny")  # a workdir, its checkpoints/ folder or one checkpoints/<step>
  m.infill("jobs:\n  build:\n    runs-on: <FILL>\n")  # -> the text with the hole filled
  m.generate(4, temperature=0.8)  # -> 4 workflows
  m.score(text)  # -> next-token loss (nats) of each token of `text`, then of EOS

Everything inference needs comes from the checkpoint's `inference` item (`checkpoint.INFERENCE`):
no token cache, no corpus. A checkpoint saved before that item existed takes its tokenizer from
the run's token cache. A tokenizer other than the one the model was trained with (a cache rebuilt
since, or one passed as `tokenizer=`) is refused with both ids named: never a silent mismatch.
"""

import dataclasses
import json
import os
import pathlib
from typing import Any

import ml_collections
import numpy as np
import tokenizers

from fimjax import checkpoint as ckpt_lib
from fimjax import inference
from fimjax import model as model_lib
from fimjax import reference
from fimjax import sample as sample_lib
from fimjax.data import cache_format
from fimjax.data import corpus
from fimjax.data import tokenizers as tok_lib

STOPS = ("eom", "line")
# An export's tensor names (fimjax.export) of the parameters of a block.
BLOCK_NAMES = {
  "wq": "attn.wq",
  "wk": "attn.wk",
  "wv": "attn.wv",
  "wo": "attn.wo",
  "w_up": "mlp.w_up",
  "w_down": "mlp.w_down",
}
EXPORT_FILES = ("config.json", "model.safetensors")
WHERE = "pass a run's workdir, its checkpoints/ folder or one checkpoints/<step> folder"


@dataclasses.dataclass
class Model:
  """A trained model with its tokenizer. `config` is the run's config; `eval_metrics` the
  evaluation saved with `step` (None when it had none or the checkpoint predates them)."""

  config: ml_collections.ConfigDict
  model_config: model_lib.ModelConfig
  params: Any
  tokenizer: Any
  special_ids: dict
  model_vocab_size: int
  step: int | None = None
  eval_metrics: dict | None = None
  path: str = ""
  meta: dict | None = None  # the checkpoint's meta: its token cache's description at training

  @property
  def positions(self) -> str:
    """The run's `fim.positions`: how a middle's positions continue after MID."""
    return self.config.fim.positions

  @property
  def tokenizer_id(self) -> str:
    return tokenizer_id(self.tokenizer)

  def infill(
    self,
    text: str,
    *,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    max_tokens: int = 128,
    seed: int = 0,
    stop: str = "eom",
    log=None,
  ) -> str:
    """`text` with every `<FILL>` hole filled, left to right (`inference.fill`); `max_tokens`
    per hole (at most half the context); `stop="line"` also ends a line hole at its first line
    end; `log(message)` hears of holes that hit `max_tokens`. InfillError for a bad hole."""
    if stop not in STOPS:
      raise ValueError(f"stop={stop!r}: use one of {STOPS}")
    sc = sample_config(temperature, top_k, top_p, max_tokens)
    sc = dataclasses.replace(sc, max_new=min(sc.max_new, self.model_config.context // 2))
    return inference.fill(
      text,
      self.tokenizer,
      self.model_config,
      self.params,
      self.special_ids,
      self.model_vocab_size,
      sc=sc,
      positions=self.positions,
      seed=seed,
      stop=stop,
      log=log,
    )

  def generate(
    self,
    n: int = 1,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    max_tokens: int = 1024,
    seed: int = 0,
    batch_size: int = 16,
  ) -> list[str]:
    """`n` documents sampled from scratch (BOS to EOS, `max_tokens` tokens at most each; one
    that hit the limit is cut there, one TCT cannot decode is "")."""
    out = []
    for tokens, _ in self._generate_tokens(
      n, temperature, top_k, top_p, max_tokens, seed, batch_size
    ):
      try:
        out.append(self.tokenizer.decode(tokens))
      except Exception:  # pylint: disable=broad-except  # TCT refuses an unfinished document
        out.append("")
    return out

  def samples(
    self,
    n: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    max_tokens: int = 1024,
    seed: int = 0,
    batch_size: int = 16,
    schema: str = "",
    validator=None,
  ) -> list[inference.Sample]:
    """Like `generate`, with each sample checked (`inference.check`: decoded, parsed,
    schema-valid against `validator`, else the JSON schema `schema`, default the bundled one)."""
    validator = validator or inference.make_validator(
      schema, fix="fix schema=, or leave it out for the workflow schema shipped with fimjax"
    )
    return [
      inference.check(inference.Sample(t, f), self.tokenizer, validator)
      for t, f in self._generate_tokens(n, temperature, top_k, top_p, max_tokens, seed, batch_size)
    ]

  def score(self, text: str) -> np.ndarray:
    """[len(tokens) + 1] float32: the next-token loss (nats) of each token of
    `m.tokenizer.encode(text)`, then of the EOS after them; the mean is `eval_loss`'s measure."""
    return inference.token_losses(
      self.model_config, self.params, self.tokenizer.encode(text), self.special_ids
    )

  def _generate_tokens(self, n, temperature, top_k, top_p, max_tokens, seed, batch_size):
    if n < 1 or batch_size < 1:
      raise ValueError(f"n={n}, batch_size={batch_size}: both must be >= 1")
    sc = sample_config(temperature, top_k, top_p, max_tokens)
    sc = dataclasses.replace(sc, max_new=self.model_config.context - 1)
    return inference.generate_tokens(
      self.model_config,
      self.params,
      self.special_ids,
      self.model_vocab_size,
      n,
      sc=sc,
      max_tokens=max_tokens,
      seed=seed,
      batch_size=min(batch_size, n),
    )


def sample_config(
  temperature: float, top_k: int, top_p: float, max_tokens: int
) -> sample_lib.SampleConfig:
  """The sampler's settings; ValueError naming the keyword that is out of range."""
  for name, value, ok, rule in (
    ("temperature", temperature, temperature >= 0, ">= 0 (0 = greedy)"),
    ("top_k", top_k, top_k >= 0, ">= 0 (0 = off)"),
    ("top_p", top_p, 0 < top_p <= 1, "in (0, 1] (1 = off)"),
    ("max_tokens", max_tokens, max_tokens >= 1, ">= 1"),
  ):
    if not ok:
      raise ValueError(f"{name}={value}: must be {rule}")
  return sample_lib.SampleConfig(float(temperature), int(top_k), float(top_p), int(max_tokens))


def tokenizer_id(tok) -> str:
  """`cache_format.tokenizer_id` of a tokenizer object: `bpe:<sha256>` or `tct:<version>`."""
  if tok.name == "bpe":
    return f"bpe:{corpus.sha256(tok.to_json().encode())}"
  return f"tct:{tok.version}"


def locate(path: str) -> tuple[str, str, int | None, str | None]:
  """(root, folder of step folders, step or None, workdir or None) of `path`: a run's workdir,
  its checkpoints/ folder (or a copy of it) or one step folder."""
  if "://" in path:  # a bucket: a workdir
    return path, path.rstrip("/") + "/checkpoints", None, path
  p = pathlib.Path(path)
  if p.is_dir():
    if (p / "checkpoints").is_dir():
      return str(p), str(p / "checkpoints"), None, str(p)
    if p.name.isdigit() and (p / "state").is_dir():
      workdir = str(p.parent.parent) if p.parent.name == "checkpoints" else None
      return str(p.parent.parent), str(p.parent), int(p.name), workdir
    if any(c.name.isdigit() and c.is_dir() for c in p.iterdir()):
      return str(p.parent), str(p), None, str(p.parent) if p.name == "checkpoints" else None
  where = (
    p / "checkpoints"
    if p.is_dir()
    else f"{path}: {'a file, not a run folder' if p.exists() else 'no such folder'}"
  )
  raise FileNotFoundError(
    f"no checkpoint in {where}; train first with python -m fimjax.main "
    f"--config CONFIG --workdir {path}, or {WHERE}"
  )


def _tokenizer_of(record: dict) -> Any:
  t = record["tokenizer"]
  if t["name"] == "bpe":
    return tok_lib.BpeTokenizer(tokenizers.Tokenizer.from_str(t["json"]), int(t["vocab_size"]))
  return tok_lib.TctTokenizer(t["module"])


def _given_tokenizer(tokenizer, meta: dict) -> Any:
  """A tokenizer passed to `load`: an object, or the path of a BPE tokenizer.json."""
  if isinstance(tokenizer, (str, os.PathLike)):
    return tok_lib.BpeTokenizer.load(tokenizer, int(meta["vocab_size"]))
  return tokenizer


def _run_tokenizer(config, workdir: str | None, step_dir: str) -> tuple[Any, str]:
  """(tokenizer, cache folder) of an old checkpoint (no `inference` item): the run's cache."""
  path = ckpt_lib.cache_dir(config, workdir) if workdir or config.data.cache_dir else None
  if path is None or cache_format.read_meta(pathlib.Path(path)) is None:
    raise FileNotFoundError(
      f"checkpoint {step_dir} predates checkpoints that carry their tokenizer, and its run's "
      f"token cache is not at {path or '<workdir>/cache'}: load it from the run's workdir, or "
      "pass its tokenizer.json (tokenizer=)"
    )
  return cache_format.load_cache(path, checksums=False).tokenizer(), path


def open_checkpoint(path: str, *, step: int | None = None, tokenizer=None, mesh=None):
  """(Model, train state, mesh) of a checkpoint (see `load`); the state (optimizer included)
  is for the loss evaluation, which `fimjax.evaluate` runs on whole train states."""
  root, steps_dir, step_hint, workdir = locate(path)
  ckpts = ckpt_lib.Checkpoints(root, steps_dir=steps_dir)
  try:
    fix = f"{WHERE}, or train first with python -m fimjax.main --config CONFIG --workdir DIR"
    step = ckpt_lib.pick_step(ckpts, step if step is not None else step_hint, fix)
    step_dir = str(ckpts.directory / str(step))
    config = ml_collections.ConfigDict(ckpts.read_json(step, "config"))
    meta = ckpts.read_json(step, "meta")
    trained = cache_format.tokenizer_id(meta)
    record = None
    if (ckpts.directory / str(step) / ckpt_lib.INFERENCE).exists():  # absent in older ones
      try:
        record = ckpts.read_json(step, ckpt_lib.INFERENCE)
      except ValueError as e:
        others = [s for s in ckpts.all_steps() if s != step]
        raise ValueError(
          f"{e}: damaged; pass another step (have: {others})"
          if others
          else f"{e}: damaged; no other checkpoint: retrain"
        ) from None
    if tokenizer is not None:
      tok, where = _given_tokenizer(tokenizer, meta), "the tokenizer passed"
      fix = "pass the tokenizer it was trained with, or none"
    elif record is not None:
      tok, saved = _tokenizer_of(record), record["tokenizer"]
      if saved["name"] == "tct":  # the module is installed, not saved: its version may differ
        where, fix = f"the installed {saved['module']}", f"install {saved['version']}"
      else:
        where = f"{step_dir}/{ckpt_lib.INFERENCE}"
        fix = "the checkpoint is damaged: load another step, or retrain"
    else:
      tok, cache = _run_tokenizer(config, workdir, step_dir)
      where, fix = (
        f"the token cache {cache}",
        (
          "the cache was rebuilt since: load a checkpoint "
          "saved with its tokenizer, or rebuild the cache "
          "with the run's corpus and settings"
        ),
      )
    if (given := tokenizer_id(tok)) != trained:
      raise ckpt_lib.tokenizer_mismatch(trained, given, where, fix)
    special_ids = dict((record or meta)["special_ids"])
    vocab = int((record or meta)["model_vocab_size"])
    state, mesh = ckpt_lib.restore_state(ckpts, step, config, vocab, mesh)
  finally:
    ckpts.close()
  cfg = model_lib.ModelConfig.from_config(config, vocab)
  model = Model(
    config,
    cfg,
    state["params"],
    tok,
    special_ids,
    vocab,
    step,
    (record or {}).get("eval"),
    step_dir,
    meta,
  )
  return model, state, mesh


def load(path: str | os.PathLike, *, step: int | None = None, tokenizer=None, mesh=None) -> Model:
  """The model of a checkpoint: `path` is a run's workdir, its checkpoints/ folder (or a copy
  of it) or one checkpoints/<step> folder; `step` picks one (default: the step folder given,
  else the best by validation loss, else the latest). `tokenizer` (an object or a tokenizer.json
  path) replaces the saved one and must be the same. `mesh`: default every local device.
  `path` may also be an export directory (`python -m fimjax.export`)."""
  path = os.fspath(path)
  if all(os.path.isfile(os.path.join(path, f)) for f in EXPORT_FILES):
    return open_export(path, tokenizer=tokenizer)
  return open_checkpoint(path, step=step, tokenizer=tokenizer, mesh=mesh)[0]


# ------------------------------------------------------------------ export directories


def unflatten_params(tensors: dict) -> dict:
  """Inverse of `flatten_params` (arrays as fp32 numpy)."""
  params = {k: np.asarray(tensors[k], np.float32) for k in ("embed", "gap_embed", "head")}
  back = {flat: w for w, flat in BLOCK_NAMES.items()}
  for name, a in tensors.items():
    if name.startswith("blocks."):
      _, i, rest = name.split(".", 2)
      params.setdefault(f"block_{i}", {})[back[rest]] = np.asarray(a, np.float32)
  return params


def model_config(config_json: dict):
  """The `model.ModelConfig` of an export's config.json (jax needed: for fimjax, not ports)."""
  a = config_json["architecture"]
  return model_lib.ModelConfig(
    vocab_size=a["vocab_size"],
    d_model=a["d_model"],
    num_layers=a["num_layers"],
    num_heads=a["num_heads"],
    context=a["context"],
    mlp_ratio=a["mlp_ratio"],
    logit_softcap=a["logit_softcap"],
    rope_base=a["rope_base"],
    dtype=a["compute_dtype"],
    param_dtype=a["param_dtype"],
  )


def open_export(path: str, *, tokenizer=None) -> Model:
  """The Model of an export directory: its weights, config.json and tokenizer.json (the BPE
  without the named specials the export adds, which training never saw in the text)."""
  cfg, params, cj = load_export(path)
  t = cj["tokenizer"]
  if t["type"] == "bpe":
    trained, where = f"bpe:{t['sha256']}", os.path.join(path, "tokenizer.json")
    if tokenizer is None:
      with open(where, encoding="utf-8") as f:
        tok_json = json.load(f)
      tok_json["added_tokens"] = []
      tokenizer = tok_lib.BpeTokenizer(
        tokenizers.Tokenizer.from_str(json.dumps(tok_json)), int(t["vocab_size"])
      )
  else:
    trained, where = f"tct:{t['version']}", f"the installed {t['module']}"
    tokenizer = tokenizer or tok_lib.TctTokenizer(t["module"])
  tok = _given_tokenizer(tokenizer, {"vocab_size": t["vocab_size"]})
  if (given := tokenizer_id(tok)) != trained:
    raise ckpt_lib.tokenizer_mismatch(trained, given, where, "use the export's own tokenizer")
  config = ml_collections.ConfigDict(
    {
      "name": cj.get("training", {}).get("config_name", "?"),
      "fim": {"positions": cj["inputs"]["fim_positions"]},
    }
  )
  special = {k: int(v) for k, v in cj["special_ids"].items()}
  metrics = cj.get("training", {}).get("metrics")
  return Model(
    config,
    cfg,
    params,
    tok,
    special,
    int(cj["architecture"]["model_vocab_size"]),
    int(cj["step"]),
    metrics,
    path,
    None,
  )


def load_export(path: str):
  """(ModelConfig, params, config.json) of an export directory, for `model.apply`."""
  m = reference.load(path)  # reads bf16 files with any safetensors version (or none)
  return model_config(m.config), unflatten_params(m.weights), m.config
