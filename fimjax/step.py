"""Optimizer, loss, and the sharded train / eval steps.

TrainState is a plain dict, saveable by orbax StandardSave:
  {"params": nested dict of fp32 arrays (string keys, as `model.init_params`),
   "opt_state": optax state (tuples/namedtuples of arrays; Adam mu/nu shaped like params),
   "step": int32 scalar (steps attempted, incremented also when an update is skipped),
   "bad_step": int32 scalar (first step with a non-finite loss or gradient; -1 if none)}
Once `bad_step >= 0`, params and opt_state stay frozen at the last good values. A run builds the
model config, optimizer and state layout once (`state_spec`) and hands it to the builders below.

Optimizer: global-norm clipping, then AdamW (Adam moments, decoupled weight decay times lr,
as torch.optim.AdamW). Weight decay applies to the matrices of the blocks and the head; not to the
token and gap embeddings (tables indexed by id: decay would shrink rare rows) -- the norms have
no parameters. Learning rate: linear warmup over `warmup_steps` (lr * (step+1)/warmup, so step
0 already learns), then cosine to `lr * min_lr_ratio` at `train.steps`.

Loss: sum of token cross-entropies over `loss_mask` / sum of `loss_mask` over the whole global
batch, also with gradient accumulation (`train.microbatches`, a lax.scan over row subsets).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from fimjax import model as model_lib
from fimjax import sharding as shd

shard_batch = shd.shard_batch  # re-exported: the loop imports it from here or from sharding
NO_DECAY = ("embed", "gap_embed")


def lr_schedule(config):
  """step -> learning rate (warmup then cosine to lr * min_lr_ratio)."""
  o, total = config.optim, int(config.train.steps)
  lr, warm, floor = float(o.lr), int(o.warmup_steps), float(o.min_lr_ratio)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    w = jnp.minimum((step + 1.0) / warm, 1.0) if warm > 0 else 1.0
    frac = jnp.clip((step - warm) / max(total - warm, 1), 0.0, 1.0)
    return lr * w * (floor + (1.0 - floor) * 0.5 * (1.0 + jnp.cos(math.pi * frac)))

  return schedule


def _decay_mask(params):
  return {k: jax.tree.map(lambda _: k not in NO_DECAY, v) for k, v in params.items()}


def make_optimizer(config) -> optax.GradientTransformation:
  o = config.optim
  return optax.chain(
    optax.clip_by_global_norm(float(o.grad_clip)) if o.grad_clip > 0 else optax.identity(),
    optax.scale_by_adam(b1=float(o.b1), b2=float(o.b2), eps=1e-8),
    optax.add_decayed_weights(float(o.weight_decay), mask=_decay_mask),
    optax.scale_by_learning_rate(lr_schedule(config)),
  )


@dataclasses.dataclass(frozen=True)
class StateSpec:
  """What a run builds once from its config and mesh, and every step function shares."""

  cfg: model_lib.ModelConfig
  tx: optax.GradientTransformation  # make_optimizer(config)
  shardings: dict  # NamedShardings of the TrainState (params by the logical rules, Adam alike)
  abstract: dict  # the TrainState as jax.ShapeDtypeStruct with those shardings (for restore)


def _fresh_state(cfg, tx, seed: int) -> dict:
  params = model_lib.init_params(cfg, seed)
  return {
    "params": params,
    "opt_state": tx.init(params),
    "step": jnp.zeros((), jnp.int32),
    "bad_step": jnp.full((), -1, jnp.int32),
  }


def state_spec(config, model_vocab_size: int, mesh) -> StateSpec:
  """The model config, optimizer and TrainState layout on `mesh` (nothing is allocated)."""
  cfg = model_lib.ModelConfig.from_config(config, model_vocab_size)
  tx = make_optimizer(config)
  shapes = jax.eval_shape(lambda: _fresh_state(cfg, tx, 0))
  param_sh = shd.tree_shardings(model_lib.param_logical_axes(cfg), mesh)
  rep = shd.replicated(mesh)
  opt_sh = optax.tree_map_params(
    tx, lambda _, s: s, shapes["opt_state"], param_sh, transform_non_params=lambda _: rep
  )
  shardings = {"params": param_sh, "opt_state": opt_sh, "step": rep, "bad_step": rep}
  abstract = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes, shardings
  )
  return StateSpec(cfg, tx, shardings, abstract)


def state_shardings(config, model_vocab_size: int, mesh) -> dict:
  """`state_spec(...).shardings`."""
  return state_spec(config, model_vocab_size, mesh).shardings


def abstract_train_state(config, model_vocab_size: int, mesh) -> dict:
  """`state_spec(...).abstract`: the TrainState to restore a checkpoint into."""
  return state_spec(config, model_vocab_size, mesh).abstract


def create_train_state(
  config, model_vocab_size: int, mesh, seed: int | None = None, *, spec: StateSpec | None = None
) -> dict:
  """Fresh TrainState, initialised directly sharded on `mesh` (seed: config.train.seed)."""
  spec = spec or state_spec(config, model_vocab_size, mesh)
  seed = int(config.train.seed if seed is None else seed)
  with jax.set_mesh(mesh):
    return jax.jit(lambda: _fresh_state(spec.cfg, spec.tx, seed), out_shardings=spec.shardings)()


def model_from_state(config, model_vocab_size: int, state) -> model_lib.Transformer:
  """An nnx Transformer holding the state's params (for sampling / inspection)."""
  cfg = model_lib.ModelConfig.from_config(config, model_vocab_size)
  return model_lib.from_params(cfg, state["params"] if "params" in state else state)


def token_losses(cfg, params, batch, dropout_key=None):
  """Per-token cross-entropy [B, L] (fp32) of `batch` under `params`.

  log-softmax without materialising it: logsumexp - target logit, the target picked by a
  compare-and-sum (fuses; a gather's backward is a scatter). With the soft-cap, logits lie in
  [-cap, cap], so the max-subtraction of logsumexp is skipped (exp(15) * 8320 is far from
  float32's limit).
  """
  logits_BxLxV = model_lib.apply(
    cfg,
    params,
    batch["tokens"],
    batch["pos"],
    batch["gap"],
    batch.get("segment_ids"),
    dropout_key=dropout_key,
  )
  return cross_entropy(cfg, logits_BxLxV, batch["targets"])


def cross_entropy(cfg, logits_BxLxV, targets_BxL):
  """Per-token cross-entropy [B, L] of fp32 logits (see token_losses)."""
  if cfg.logit_softcap and cfg.logit_softcap <= 30:
    logz_BxL = jnp.log(jnp.sum(jnp.exp(logits_BxLxV), axis=-1))
  else:
    logz_BxL = jax.nn.logsumexp(logits_BxLxV, axis=-1)
  hit_BxLxV = jnp.arange(logits_BxLxV.shape[-1]) == targets_BxL[..., None]
  tgt_BxL = jnp.sum(jnp.where(hit_BxLxV, logits_BxLxV, 0.0), axis=-1)
  return logz_BxL - tgt_BxL


def _loss_sums(cfg, params, batch, eom_id=None, dropout_key=None):
  """Sums over the batch: loss, count, and the AR (gap == 0) / FIM (gap > 0) parts.

  With `eom_id` (evaluation), also loss and argmax-correct sums by where the target sits:
  `first` (the middle's first token, predicted at MID), `inside` (the rest of the middle),
  `eom` (the end of the middle) and `context` (gap == 0: AR tokens, or a FIM row's prefix and
  suffix). Each has <part>_loss_sum, <part>_correct and <part>_count.
  """
  if eom_id is None:
    ce_BxL = token_losses(cfg, params, batch, dropout_key)
  else:
    logits_BxLxV = model_lib.apply(
      cfg, params, batch["tokens"], batch["pos"], batch["gap"], batch.get("segment_ids")
    )
    ce_BxL = cross_entropy(cfg, logits_BxLxV, batch["targets"])
  mask = batch["loss_mask"].astype(jnp.float32)
  fim = (batch["gap"] > 0).astype(jnp.float32)
  ar_m, fim_m = mask * (1.0 - fim), mask * fim
  sums = {
    "loss_sum": jnp.sum(ce_BxL * mask),
    "count": jnp.sum(mask),
    "ar_loss_sum": jnp.sum(ce_BxL * ar_m),
    "ar_count": jnp.sum(ar_m),
    "fim_loss_sum": jnp.sum(ce_BxL * fim_m),
    "fim_count": jnp.sum(fim_m),
  }
  if eom_id is None:
    return sums
  correct = (jnp.argmax(logits_BxLxV, axis=-1) == batch["targets"]).astype(jnp.float32)
  real, gap, is_eom = mask > 0, batch["gap"], batch["targets"] == eom_id
  parts = {
    "first": (gap == 1) & ~is_eom,
    "inside": (gap > 1) & ~is_eom,
    "eom": (gap > 0) & is_eom,
    "context": gap == 0,
  }
  for name, sel in parts.items():
    w = (sel & real).astype(jnp.float32)
    sums.update(
      {
        f"{name}_loss_sum": jnp.sum(ce_BxL * w),
        f"{name}_correct": jnp.sum(correct * w),
        f"{name}_count": jnp.sum(w),
      }
    )
  return sums


def _check_batch(config, mesh):
  b, m = int(config.train.batch_size), int(config.train.microbatches)
  split = mesh.shape["data"] * mesh.shape["fsdp"]
  if b % m or (b // m) % split:
    fit = m * split * max(1, round(b / (m * split)))  # the nearest batch that splits
    raise ValueError(
      f"train.batch_size={b} / train.microbatches={m} must be a multiple of "
      f"data*fsdp={split} (the devices that split a batch): set "
      f"--config.train.batch_size={fit}, or change mesh.data/mesh.fsdp"
    )


class _MeshFn:
  """A jitted function run (and traced, lowered) under `jax.set_mesh(mesh)`."""

  def __init__(self, jitted, mesh):
    self.jitted, self.mesh = jitted, mesh

  def __call__(self, *args):
    with jax.set_mesh(self.mesh):
      return self.jitted(*args)

  def lower(self, *args):
    with jax.set_mesh(self.mesh):
      return self.jitted.lower(*args)


def make_train_step(config, model_vocab_size: int, mesh, *, spec: StateSpec | None = None):
  """fn(state, batch) -> (state, metrics); jitted on `mesh`, state donated.

  metrics (fp32 scalars, replicated): loss, ar_loss, fim_loss, grad_norm (before clipping), lr,
  tokens (loss-carrying tokens), finite (1.0 / 0.0).
  """
  _check_batch(config, mesh)
  spec = spec or state_spec(config, model_vocab_size, mesh)
  cfg, tx, schedule = spec.cfg, spec.tx, lr_schedule(config)
  micro = int(config.train.microbatches)
  seed = int(config.train.seed)

  def grad_fn(params, batch, total, key):
    def f(p):
      sums = _loss_sums(cfg, p, batch, dropout_key=key)
      return sums["loss_sum"] / total, sums

    return jax.grad(f, has_aux=True)(params)

  def step_fn(state, batch):
    params = state["params"]
    total = jnp.maximum(jnp.sum(batch["loss_mask"].astype(jnp.float32)), 1.0)
    # The step's dropout key is a function of (seed, step): a resumed run draws the same masks.
    key = jax.random.fold_in(jax.random.key(seed), state["step"]) if cfg.dropout > 0 else None
    if micro == 1:
      grads, sums = grad_fn(params, batch, total, key)
    else:
      # Microbatch i = rows i, i+M, ...: each device keeps its own rows (no resharding).
      def split(x):
        x = x.reshape((x.shape[0] // micro, micro) + x.shape[1:]).swapaxes(0, 1)
        return shd.constrain(x, (None, "batch") + (None,) * (x.ndim - 2))

      mbs = jax.tree.map(split, batch)

      def body(carry, i_mb):
        i, mb = i_mb
        g, s = grad_fn(params, mb, total, None if key is None else jax.random.fold_in(key, i))
        return jax.tree.map(jnp.add, carry, (g, s)), None

      zeros = jax.tree.map(
        jnp.zeros_like,
        jax.eval_shape(
          lambda p, b: grad_fn(p, b, total, key), params, jax.tree.map(lambda x: x[0], mbs)
        ),
      )
      (grads, sums), _ = jax.lax.scan(body, zeros, (jnp.arange(micro), mbs))
    loss = sums["loss_sum"] / total
    grad_norm = optax.tree.norm(grads)
    updates, new_opt = tx.update(grads, state["opt_state"], params)
    new_params = optax.apply_updates(params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    ok = finite & (state["bad_step"] < 0)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
    new_state = {
      "params": keep(new_params, params),
      "opt_state": keep(new_opt, state["opt_state"]),
      "step": state["step"] + 1,
      "bad_step": jnp.where(
        ~finite & (state["bad_step"] < 0), state["step"], state["bad_step"]
      ).astype(jnp.int32),
    }
    metrics = {
      "loss": loss,
      "ar_loss": sums["ar_loss_sum"] / jnp.maximum(sums["ar_count"], 1.0),
      "fim_loss": sums["fim_loss_sum"] / jnp.maximum(sums["fim_count"], 1.0),
      "grad_norm": grad_norm,
      "lr": schedule(state["step"]),
      "tokens": sums["count"],
      "finite": finite.astype(jnp.float32),
    }
    return new_state, metrics

  st_sh = spec.shardings
  jitted = jax.jit(
    step_fn,
    in_shardings=(st_sh, shd.batch_sharding(mesh)),
    out_shardings=(st_sh, shd.replicated(mesh)),
    donate_argnums=0,
  )
  return _MeshFn(jitted, mesh)


def make_eval_step(
  config, model_vocab_size: int, mesh, eom_id: int | None = None, *, spec: StateSpec | None = None
):
  """fn(state, batch) -> sums {loss_sum, count, ar_loss_sum, ar_count, fim_loss_sum, fim_count}
  (and, with `eom_id`, the per-part sums of `_loss_sums`).

  Add the sums over a split and divide (loss = loss_sum / count) for exact split averages.
  """
  spec = spec or state_spec(config, model_vocab_size, mesh)

  def eval_fn(state, batch):
    return _loss_sums(spec.cfg, state["params"], batch, eom_id)

  jitted = jax.jit(
    eval_fn,
    in_shardings=(spec.shardings, shd.batch_sharding(mesh)),
    out_shardings=shd.replicated(mesh),
  )
  return _MeshFn(jitted, mesh)
