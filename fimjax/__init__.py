"""fimjax: fill-in-the-middle language models of GitHub Actions workflows, in JAX/Flax."""

import dataclasses
import importlib.util
import os


def _skip_tpu_backend_without_a_tpu() -> None:
  """With libtpu installed (the `dev` extra: compile-only TPU targets for `fimjax.fit`) but no TPU
  chip here, jax would still start libtpu's runtime at its first device query, which prints a
  screen of errors about TPU hostnames and then falls back to the CPU. Skip that backend."""
  if os.environ.get("JAX_PLATFORMS") or importlib.util.find_spec("libtpu") is None:
    return
  try:
    from jax._src import hardware_utils  # pylint: disable=g-import-not-at-top
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top

    factories = xla_bridge._backend_factories  # pylint: disable=protected-access
    if "tpu" in factories and hardware_utils.num_available_tpu_chips_and_device_id()[0] == 0:
      # Kept registered (lowering rules for TPU targets need the platform known); it just
      # reports "no TPU", which jax takes quietly.
      factories["tpu"] = dataclasses.replace(factories["tpu"], factory=_no_tpu, fail_quietly=True)
  except (ImportError, AttributeError, TypeError):  # another jax: its start-up messages stay
    pass


def _no_tpu():
  raise RuntimeError("no TPU chip on this machine")


_skip_tpu_backend_without_a_tpu()


def __getattr__(name: str):
  # `fimjax.load` without importing jax, flax and orbax with the package: tools that never load
  # a model (the cache CLI) start faster.
  if name == "load":
    from fimjax import api  # pylint: disable=g-import-not-at-top

    return api.load
  raise AttributeError(f"module 'fimjax' has no attribute {name!r}")
