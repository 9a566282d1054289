"""The one place that lists every config field, its default and its meaning.

Config files in `configs/` call `base_config()` and change what differs; anything can be
overridden on the command line (`--config.train.steps=50`). `MODEL_SIZES` is the design's table.
"""

import ml_collections

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
  # Comma-separated files/folders of workflows, or "default": the embedded corpus.
  c.data.corpus = "default"
  c.data.default_corpus_size = 3000  # generated workflows added to the hand-written ones
  c.data.cache_dir = ""  # "" = <workdir>/cache
  c.data.tokenizer = "auto"  # auto | tct | bpe
  c.data.tct_module = "tct_github_workflow"
  c.data.bpe_vocab_size = 8192
  c.data.val_fraction = 0.05
  c.data.schema_check = False  # validate each file against the workflow JSON schema
  c.data.schema_path = ""  # "" = bundled search: ../shared/data/schemas/github-workflow.json
  c.data.max_file_bytes = 1_000_000
  c.data.pack = True  # pack several examples per row (training only)
  c.data.num_workers = 0  # grain multiprocess prefetch workers (0 = in-process)

  c.fim = ml_collections.ConfigDict()
  c.fim.rate = 0.5
  c.fim.span_policy = "split"  # token | uniform | split
  c.fim.max_span = 64  # longest middle for span_policy=uniform
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
  c.model.remat = False

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
  c.train.steps = 10_000
  c.train.seed = 0
  c.train.batch_size = 128  # global batch, in rows
  c.train.microbatches = 1  # gradient accumulation: batch_size / microbatches rows per pass
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 1000
  c.train.eval_batch_size = 32
  c.train.checkpoint_every_steps = 1000
  c.train.checkpoint_every_minutes = 30.0  # 0 = only by steps
  c.train.keep_checkpoints = 3
  c.train.peak_tflops = 0.0  # 0 = detect (accelerator's dense bf16 peak, or measured CPU matmul peak)
  c.train.progress = True  # terminal progress bar
  return c
