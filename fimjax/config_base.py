"""The one place that lists every config field, its default and its meaning.

Config files in `configs/` call `base_config()` and change what differs; anything can be
overridden on the command line (`--config.train.steps=50`). `MODEL_SIZES` is the design's table.
"""

import importlib.util
import pathlib

import ml_collections

from fimjax.data import corpus

# name: (d_model, num_layers, num_heads, context)
MODEL_SIZES = {
  "tiny": (128, 4, 4, 256),
  "small": (384, 8, 6, 1024),
  "medium_small": (384, 12, 6, 1024),
  "medium": (768, 10, 12, 1024),
  "medium_512": (768, 10, 12, 512),
  "large_512": (1024, 12, 16, 512),
  "large": (1024, 12, 16, 1024),
}


def base_config(size: str) -> ml_collections.ConfigDict:
  """Defaults shared by all configs, with the model shape of `size` from `MODEL_SIZES`."""
  d_model, num_layers, num_heads, context = MODEL_SIZES[size]
  c = ml_collections.ConfigDict()
  c.name = size

  c.data = ml_collections.ConfigDict()
  # Comma-separated files/folders of workflows; "default": the embedded corpus of 1,269 real
  # workflows (its own train/validation split); "synthetic:N": hand-written + N generated ones.
  c.data.corpus = "default"
  c.data.cache_dir = ""  # "" = <workdir>/cache
  c.data.tokenizer = "auto"  # auto | tct | bpe
  c.data.tct_module = corpus.WORKFLOW_TCT
  # What a document must be: "workflow" (a mapping with `jobs`), "any" (any YAML/JSON mapping), or
  # "auto" (workflow, unless a TCT module other than the workflow one is the tokenizer).
  c.data.documents = "auto"
  c.data.jsonc = False  # accept JSON with comments and trailing commas (tsconfig-style files)
  c.data.text_field = "content"  # the document text in JSONL / Parquet / Hugging Face rows
  c.data.bpe_vocab_size = 8192
  c.data.val_fraction = 0.05
  c.data.schema_check = False  # validate each file against the workflow JSON schema
  c.data.schema_path = ""  # "" = the workflow schema shipped in fimjax/data/schemas/
  c.data.max_file_bytes = 1_000_000
  c.data.pack = True  # pack several examples per row (training only)
  c.data.num_workers = 0  # grain multiprocess prefetch workers (0 = in-process)

  c.fim = ml_collections.ConfigDict()  # docs/infill.md has the measurements behind these
  c.fim.rate = 0.5
  # Where holes are cut (fimjax/data/holes.py): token | uniform | split | line | value | step |
  # block | yaml | mixed (a kind per example, drawn with the weights of fim.mix).
  c.fim.span_policy = "mixed"
  # Random spans (split) never learn to stop at small scale; 0.1 of them instead of 0.25, for more
  # value holes, gives value/line exact 12/12% vs 10/10% and a 0.4% lower next-token loss (tiny,
  # 400 steps, 96 holes per kind: bench/results/fim_ablation-mix96.md).
  c.fim.mix = ml_collections.ConfigDict(
    {
      "token": 0.0,
      "uniform": 0.0,
      "split": 0.1,
      "line": 0.3,
      "value": 0.4,
      "step": 0.1,
      "block": 0.1,
      "yaml": 0.0,
    }
  )
  c.fim.max_span = 64  # longest middle of uniform holes
  c.fim.max_lines = 1  # line holes take 1..max_lines whole lines
  c.fim.positions = "continued"  # collapsed | continued | sequential: pos of MID and the middle
  # Loss weight of the EOM target (the end of a middle). 3 lifts EOM accuracy on line holes from
  # 47% to 79% and line exact match from 3% to 12% at no next-token cost (tiny, 400 steps).
  c.fim.eom_weight = 3.0
  c.fim.spm_rate = 0.0  # share of FIM examples in SPM order
  c.fim.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.d_model = d_model
  c.model.num_layers = num_layers
  c.model.num_heads = num_heads
  c.model.context = context  # tokens per row fed to the model
  c.model.mlp_ratio = 4
  c.model.logit_softcap = 15.0
  c.model.rope_base = 10_000.0
  c.model.dtype = "bfloat16"  # compute dtype
  c.model.param_dtype = "float32"
  c.model.remat = False  # recompute each block in the backward pass (less memory)
  # auto (splash on TPU, else xla) | xla (segment-aware, blocked; any device) | cudnn (GPU, rows
  # without segments; packed rows fall back to xla) | splash (Pallas TPU kernel)
  c.model.attention = "auto"
  c.model.attn_block = 128  # query block of the xla attention (skips the masked triangle)
  # Residual dropout on each block's attention and MLP outputs (training only): a regulariser for
  # small corpora, where a model sees its data many times (docs/infill.md, "The quality bar").
  c.model.dropout = 0.0

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 3e-4
  c.optim.warmup_steps = 200
  c.optim.min_lr_ratio = 0.1  # cosine decays to lr * min_lr_ratio
  c.optim.weight_decay = 0.1
  c.optim.b1 = 0.9
  c.optim.b2 = 0.95
  c.optim.grad_clip = 1.0

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1 = all devices not used by the other axes
  c.mesh.fsdp = 1
  c.mesh.tensor = 1

  c.train = ml_collections.ConfigDict()
  c.train.steps = 10_000  # length of the run (the lr schedule ends here)
  c.train.stop_after_steps = 0  # stop early at this step with a checkpoint (0 = train.steps)
  c.train.seed = 0
  c.train.batch_size = 128  # global batch, in rows
  c.train.microbatches = 1  # gradient accumulation: batch_size / microbatches rows per pass
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 1000
  c.train.eval_batch_size = 32
  c.train.checkpoint_every_steps = 1000
  c.train.checkpoint_every_minutes = 30.0  # 0 = only by steps
  c.train.keep_checkpoints = 3
  c.train.peak_tflops = (
    0.0  # 0 = detect (accelerator's dense bf16 peak, or measured CPU matmul peak)
  )
  c.train.progress = True  # progress bar on a terminal; one plain line per log step otherwise
  c.train.profile_steps = (
    ""  # "START,COUNT": a jax.profiler trace of COUNT steps in <workdir>/profile
  )
  c.train.wandb_project = ""  # log metrics to Weights & Biases too (needs the `wandb` extra)

  c.eval = ml_collections.ConfigDict()  # sampling metrics (fimjax/evaluate.py)
  c.eval.infill_holes = 16  # held-out holes per kind (value, line, step, block, 4 span lengths)
  c.eval.generate_samples = 8  # workflows sampled from scratch for the validity rates
  c.eval.max_new_tokens = 64  # longest middle an infill hole may take (EOM included)
  c.eval.in_loop = True  # also compute the sampling metrics at each evaluation of training
  return c


# Fields that give a run its meaning: resuming with another value would silently mix two runs.
# Everything else (steps, intervals, mesh, workers, lr schedule length...) may change on resume.
FIXED_ON_RESUME = (
  "data.corpus",
  "data.tokenizer",
  "data.tct_module",
  "data.documents",
  "data.jsonc",
  "data.text_field",
  "data.bpe_vocab_size",
  "data.val_fraction",
  "data.pack",
  "fim",
  "model.d_model",
  "model.num_layers",
  "model.num_heads",
  "model.context",
  "model.mlp_ratio",
  "model.logit_softcap",
  "model.rope_base",
  "model.param_dtype",
  "train.seed",
  "train.batch_size",
)

_CHOICES = {
  "data.tokenizer": ("auto", "tct", "bpe"),
  "data.documents": ("auto", "workflow", "any"),
  "fim.span_policy": (
    "token",
    "uniform",
    "split",
    "line",
    "value",
    "step",
    "block",
    "yaml",
    "mixed",
  ),
  "fim.positions": ("collapsed", "continued", "sequential"),
  "model.dtype": ("float32", "bfloat16", "float16"),
  "model.param_dtype": ("float32", "bfloat16"),
  "model.attention": ("auto", "xla", "cudnn", "splash"),
}


def _get(tree: dict, dotted: str):
  for part in dotted.split("."):
    if not isinstance(tree, dict) or part not in tree:
      return None
    tree = tree[part]
  return tree


def _flatten(prefix: str, value) -> dict:
  if isinstance(value, dict):
    out = {}
    for k, v in value.items():
      out.update(_flatten(f"{prefix}.{k}", v))
    return out
  return {prefix: value}


# Fixed fields added after runs were saved without them: a run saved before a field existed
# behaved as this value does, so resuming with it changes nothing.
ADDED_LATER = {"data.documents": "auto", "data.jsonc": False, "data.text_field": "content"}


def incompatible_fields(saved: dict, now: dict) -> list[tuple[str, object, object]]:
  """(field, saved value, new value) for every fixed field that differs."""
  diffs = []
  for key in FIXED_ON_RESUME:
    a, b = _flatten(key, _get(saved, key)), _flatten(key, _get(now, key))
    for k in sorted(set(a) | set(b)):
      if a.get(k) is None and k in ADDED_LATER and b.get(k) == ADDED_LATER[k]:
        continue
      if a.get(k) != b.get(k) and not (
        isinstance(a.get(k), (list, tuple)) and list(a[k]) == list(b.get(k) or [])
      ):
        diffs.append((k, a.get(k), b.get(k)))
  return diffs


# The range of every numeric field: ">= a" / "> a", or an interval "[a, b]" / "[a, b)".
_RANGES = {
  "data.bpe_vocab_size": ">= 1",
  "data.val_fraction": "[0, 1)",
  "data.max_file_bytes": ">= 1",
  "data.num_workers": ">= 0",
  "fim.rate": "[0, 1]",
  "fim.max_span": ">= 1",
  "fim.max_lines": ">= 1",
  "fim.eom_weight": "> 0",
  "fim.spm_rate": "[0, 1]",
  "fim.seed": ">= 0",
  "model.d_model": ">= 1",
  "model.num_layers": ">= 1",
  "model.num_heads": ">= 1",
  "model.context": ">= 8",
  "model.mlp_ratio": ">= 1",
  "model.logit_softcap": ">= 0",
  "model.rope_base": "> 0",
  "model.attn_block": ">= 1",
  "model.dropout": "[0, 1)",
  "optim.lr": "> 0",
  "optim.warmup_steps": ">= 0",
  "optim.min_lr_ratio": "[0, 1]",
  "optim.weight_decay": ">= 0",
  "optim.b1": "[0, 1)",
  "optim.b2": "[0, 1)",
  "optim.grad_clip": ">= 0",
  "mesh.data": ">= -1",
  "mesh.fsdp": ">= -1",
  "mesh.tensor": ">= -1",  # -1 = the rest
  "train.steps": ">= 1",
  "train.stop_after_steps": ">= 0",
  "train.seed": ">= 0",
  "train.batch_size": ">= 1",
  "train.microbatches": ">= 1",
  "train.log_every_steps": ">= 1",
  "train.eval_every_steps": ">= 1",
  "train.eval_batch_size": ">= 1",
  "train.checkpoint_every_steps": ">= 1",
  "train.checkpoint_every_minutes": ">= 0",
  "train.keep_checkpoints": ">= 1",
  "train.peak_tflops": ">= 0",
  "eval.infill_holes": ">= 0",
  "eval.generate_samples": ">= 0",
  "eval.max_new_tokens": ">= 1",
}


def _in_range(value, rule: str) -> bool:
  """Whether `value` obeys `rule` (a `_RANGES` entry); False for NaN."""
  if rule[0] in "[(":
    low, high = (float(x) for x in rule[1:-1].split(","))
    return (value >= low if rule[0] == "[" else value > low) and (
      value <= high if rule[-1] == "]" else value < high
    )
  op, bound = rule.split()
  return value >= float(bound) if op == ">=" else value > float(bound)


def validate(c: ml_collections.ConfigDict) -> None:
  """Checks values the types alone cannot; raises ValueError naming the flag and the fix."""
  flat = {k[1:]: v for k, v in _flatten("", c.to_dict()).items()}

  def fail(key, problem):
    raise ValueError(f"--config.{key}={flat[key]!r}: {problem}")

  for key, allowed in _CHOICES.items():
    if flat.get(key) not in allowed:
      fail(key, f"must be one of {', '.join(allowed)}")
  for key, rule in _RANGES.items():
    value = flat.get(key)
    if value is None:
      continue
    if isinstance(value, float) and abs(value) == float("inf"):
      fail(key, "must be a finite number")
    if not _in_range(value, rule):
      fail(key, f"must be {'in ' if rule[0] in '[(' else ''}{rule}")
  m = c.model
  for axis in ("mesh.data", "mesh.fsdp", "mesh.tensor"):
    if flat[axis] == 0:
      fail(axis, "must be -1 (the devices the other axes leave) or >= 1")
  if m.d_model % m.num_heads:
    fail("model.d_model", f"must be divisible by model.num_heads={m.num_heads}")
  if (m.d_model // m.num_heads) % 2:
    fail(
      "model.d_model",
      f"head dim d_model / model.num_heads={m.num_heads} is "
      f"{m.d_model // m.num_heads}, must be even (RoPE rotates pairs of dims)",
    )
  if c.mesh.tensor > 0 and m.num_heads % c.mesh.tensor:
    fail("mesh.tensor", f"must divide model.num_heads={m.num_heads} (heads are split over it)")
  if c.train.batch_size % c.train.microbatches:
    fail("train.batch_size", f"must be divisible by train.microbatches={c.train.microbatches}")
  profile_window(c.train.profile_steps)
  mix = c.fim.mix.to_dict()
  for kind, weight in mix.items():
    if not weight >= 0:
      fail(f"fim.mix.{kind}", "must be >= 0")
  if c.fim.span_policy == "mixed" and sum(mix.values()) <= 0:
    raise ValueError(
      f"--config.fim.mix: weights {mix} are all 0: give at least one kind a "
      "weight > 0, or set --config.fim.span_policy to one kind"
    )


def profile_window(spec: str) -> tuple[int, int] | None:
  """`train.profile_steps` "START,COUNT" as (START, COUNT); None for ""; ValueError otherwise."""
  if not spec:
    return None
  try:
    start, count = (int(x) for x in str(spec).split(","))
  except ValueError:
    start, count = -1, 0
  if start < 0 or count < 1:
    raise ValueError(
      f"--config.train.profile_steps={spec!r}: must be \"START,COUNT\" with "
      "START >= 0 and COUNT >= 1, e.g. \"10,3\" (trace steps 11-13)"
    )
  return start, count


def load_config_file(path) -> ml_collections.ConfigDict:
  """`get_config()` of a config file such as `configs/small.py` (for notebooks, tests, benches)."""
  path = pathlib.Path(path)
  spec = importlib.util.spec_from_file_location(f"fimjax_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not callable(getattr(module, "get_config", None)):
    raise ValueError(no_get_config(path))
  return module.get_config()


def no_get_config(path) -> str:
  """The error for a config file without `get_config()`, naming the file and the fix."""
  return (
    f"{path} has no get_config(): define `def get_config():` returning the config, "
    "e.g. `return base_config(\"tiny\")` with any changes (as configs/*.py do)"
  )
