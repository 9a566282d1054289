"""Export a trained run as files another framework loads (no jax, orbax or token cache needed).

  python -m fimjax.export --workdir DIR --out DIR [--step N] [--dtype float32|bfloat16]

What is written and why: `fimjax.export` (docs/export.md).
"""

from absl import flags

from fimjax import export
from fimjax.cli import common

PROG = "python -m fimjax.export"


def define(fv: flags.FlagValues) -> None:
  common.model_flags(fv)
  flags.DEFINE_string("out", None, "folder to write the export to (created)", flag_values=fv)
  flags.DEFINE_enum(
    "dtype",
    "float32",
    export.DTYPES,
    "weights in the file: float32 (lossless, default) or bfloat16 (half size)",
    flag_values=fv,
  )


def body(fv: flags.FlagValues, args: list[str]) -> int:
  del args
  if problem := common.output_error(fv.out, folder=True):
    common.error(f"--out {problem}")
    return 2
  try:
    res = export.export_run(fv.workdir, fv.out, step=fv.step, dtype=fv.dtype)
  except FileNotFoundError as e:
    common.error(common.first_line(e))  # names the folder and the fix
    return 2
  except (ValueError, OSError) as e:
    common.error(common.first_line(e))
    return 1
  print(
    f"Exported step {res['step']} of {fv.workdir} to {fv.out} ({fv.dtype}, "
    f"{sum(res['bytes'].values()) / 2**20:.1f} MiB, {res['seconds']:.1f} s): "
    + ", ".join(sorted(res["bytes"]))
    + (
      ""
      if export.TOKENIZER in res["bytes"]
      else " (no tokenizer.json: a TCT model's ids "
      "come from its module, named with its version in config.json)"
    )
  )
  return 0


def main(argv=None) -> int:
  return common.run(PROG, __doc__, define, body, argv, required=("workdir", "out"))
