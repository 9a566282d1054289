"""fimjax's commands, one module each, thin wrappers over the library (docs/interfaces.md).

train (`python -m fimjax.main`), evaluate, infill, generate, compare, export, serve, fit, plot,
cache (`python -m fimjax.data.cache`) and pipeline (`python -m fimjax.data.pipeline show`). All
use one flag system (`common`): absl flags, underscores (`--max_tokens`; `--max-tokens` is
read as the same flag), one-line errors with exit status 2.
"""
