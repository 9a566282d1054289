"""Fill the holes of a workflow file with a trained model.

  python -m fimjax.infill --workdir DIR FILE [--out PATH] [--temperature T] [--top_k K]
                          [--top_p P] [--seed S] [--max_tokens N] [--step STEP] [--stop eom|line]

DIR (or `--model DIR`): a run's workdir, its checkpoints/ folder (a copy will do) or one
checkpoints/<step> folder; no token cache is needed (`fimjax.api.load`).

A hole is the marker `<FILL>`. Alone on its line (indentation allowed) it is a *line hole*: the
model writes that whole line, its indentation included (and may write several lines). Inside a
line it is a *span hole*: the model writes the text between what precedes and what follows it
(spaces right before the marker belong to the hole: BPE tokens carry their leading space).
Holes are filled left to right; hole i sees the file before it with the earlier holes already
filled (prefix) and the text up to the next hole (suffix). A suffix cut at the next hole is
what training calls a window that ends mid-document, so no EOS follows it; the last hole's
suffix runs to the end of the file, followed by EOS. A hole ends where the model writes EOM;
`--stop line` also ends a line hole at the end of its first line (before a token holding a
newline). See docs/infill.md.

Only the BPE tokenizer can express a hole in the text; with TCT (whole JSON documents only) the
command stops with a one-line error.
"""

import sys

from absl import flags

from fimjax import api
from fimjax.cli import common
from fimjax.inference import MARKER, InfillError, find_holes

PROG = "python -m fimjax.infill"


def define(fv: flags.FlagValues) -> None:
  common.model_flags(fv)
  flags.DEFINE_string(
    "out", None, "write the completed workflow here (default: print it)", flag_values=fv
  )
  flags.DEFINE_string(
    "hole", None, "TCT only: a path such as jobs.build.steps[2] (not supported yet)", flag_values=fv
  )
  flags.DEFINE_enum(
    "stop",
    "eom",
    ("eom", "line"),
    "line: also end a line hole at the end of its first line",
    flag_values=fv,
  )
  common.sampling_flags(fv, temperature=0.0, max_tokens=128)


def _read_text(path: str) -> str:
  """A UTF-8 text file; UnicodeDecodeError for another encoding (latin-1) or a binary file."""
  with open(path, "rb") as f:
    data = f.read()
  if b"\0" in data:
    raise UnicodeDecodeError(
      "utf-8", data, data.index(b"\0"), data.index(b"\0") + 1, "a binary file"
    )
  return data.decode("utf-8")


def body(fv: flags.FlagValues, args: list[str]) -> int:
  [path] = args
  err = common.error
  try:
    text = _read_text(path)
  except OSError as e:
    err(f"cannot read {path}: {e.strerror}")
    return 2
  except UnicodeDecodeError as e:
    err(
      f"{path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}: "
      f"{e.reason}): save the workflow as UTF-8"
    )
    return 2
  if fv.out and (problem := common.output_error(fv.out)):
    err(f"--out {problem}")
    return 2
  if fv.hole is None and not find_holes(text):
    err(
      f"{path} has no hole: mark one with {MARKER} (alone on a line for a whole line, "
      "inside a line for a span)"
    )
    return 2
  try:
    model = api.load(fv.workdir, step=fv.step)
    if fv.hole is not None:
      name = model.tokenizer.name
      raise InfillError(
        f"--hole {fv.hole}: hole paths are not supported yet (a {name} model: "
        + (
          "TCT encodes whole JSON documents only"
          if name == "tct"
          else f"mark the hole with {MARKER} in the file instead"
        )
        + "; see docs/infill.md)"
      )
    out = model.infill(
      text,
      temperature=fv.temperature,
      top_k=fv.top_k,
      top_p=fv.top_p,
      max_tokens=fv.max_tokens,
      seed=fv.seed,
      stop=fv.stop,
      log=lambda m: print(m, file=sys.stderr),
    )
  except (InfillError, FileNotFoundError, ValueError) as e:
    err(common.first_line(e))
    return 2 if isinstance(e, InfillError) else 1
  if fv.out:
    with open(fv.out, "w", encoding="utf-8") as f:
      f.write(out)
  else:
    sys.stdout.write(out)
  return 0


def main(argv=None) -> int:
  return common.run(PROG, __doc__, define, body, argv, required=("workdir",), positional=("FILE",))
