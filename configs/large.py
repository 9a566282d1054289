"""large: 167.8M parameters, context 1024. fsdp across all chips by default.

Run:
  python -m fimjax.main --config configs/large.py --workdir runs/large \
      --config.data.corpus=/path/to/workflows

Reference hyperparameters: AdamW (0.9, 0.95), weight decay 0.1, clip 1.0, warmup then cosine to
10%, 128 rows per step, lr 8e-5. Check memory first: python -m fimjax.fit --config configs/large.py
Final loss: not measured yet for this config (no accelerator run recorded).
"""

from fimjax.config_base import base_config


def get_config():
  c = base_config("large")
  c.optim.lr = 8e-5
  c.train.steps = 20000
  c.mesh.data = 1
  c.mesh.fsdp = -1  # shard parameters and optimizer state over every chip
  c.model.remat = True  # with fsdp over 8 chips: ~4.2 GiB per chip instead of ~35 GiB
  return c
