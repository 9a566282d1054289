"""Fill the holes of a workflow file with a trained model.

  python -m fimjax.infill --workdir DIR FILE [--out PATH] [--temperature T] [--top-k K]
                          [--top-p P] [--seed S] [--max-tokens N] [--step STEP] [--stop eom|line]

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

import argparse
import sys

import numpy as np

from fimjax import api
from fimjax import cli
from fimjax.inference import MARKER, Hole, InfillError, fill, find_holes  # noqa: F401


def _args(argv):
  p = cli.ArgumentParser(prog="python -m fimjax.infill", description=__doc__.split("\n")[0])
  p.add_argument("file", help=f"workflow file with {MARKER} holes")
  p.add_argument("--workdir", "--model", dest="workdir", required=True,
                 help="a run's workdir, its checkpoints/ folder (or a copy) or one step folder")
  p.add_argument("--out", help="write the completed workflow here (default: print it)")
  p.add_argument("--step", type=int, help="checkpoint step (default: best, else latest)")
  p.add_argument("--hole", help="TCT only: a path such as jobs.build.steps[2] (not supported yet)")
  p.add_argument("--stop", choices=("eom", "line"), default="eom",
                 help="line: also end a line hole at the end of its first line")
  add_sampling_flags(p, temperature=0.0, max_tokens=128)
  return p.parse_args(argv)


def add_sampling_flags(p: argparse.ArgumentParser, *, temperature: float, max_tokens: int):
  p.add_argument("--temperature", type=cli.number(float, low=0), default=temperature,
                 help="0 = greedy")
  p.add_argument("--top-k", type=cli.number(low=0), default=0, help="0 = off")
  p.add_argument("--top-p", type=cli.number(float, above=0, high=1), default=1.0, help="1.0 = off")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--max-tokens", type=cli.number(low=1), default=max_tokens,
                 help="tokens per hole / sample")


def load_model(workdir: str, step=None):
  """(config, cache, ModelConfig, params, step) of a run's checkpoint, with its token cache."""
  from fimjax import checkpoint  # pylint: disable=g-import-not-at-top  # jax after arg parsing
  from fimjax import model as model_lib  # pylint: disable=g-import-not-at-top
  config, cache, state, step = checkpoint.load_run(workdir, step=step)
  cfg = model_lib.ModelConfig.from_config(config, cache.model_vocab_size)
  return config, cache, cfg, state["params"], step


def demo(workdir: str, *, kind: str = "line", context_lines: int = 3) -> str:
  """A newcomer's look at the model: one fixed held-out hole of `kind` (a validation document's
  line with a `key: value`) filled greedily, with the lines around it and the file's own text."""
  from fimjax import infill_eval  # pylint: disable=g-import-not-at-top
  config, cache, cfg, params, step = load_model(workdir)
  tok = cache.tokenizer()
  if tok.name != "bpe":
    return f"(no text hole to show: the {tok.name} tokenizer has no line structure)"
  docs = cache.documents("validation")
  max_new = min(int(config.eval.max_new_tokens), cfg.context // 2)
  holes = [h for h in infill_eval.make_holes(docs, 64, max_new) if h["kind"] == kind]
  text = lambda h, a, b: tok.decode(np.asarray(docs[h["doc"]][a:b]).tolist())  # noqa: E731
  holes = [h for h in holes if ": " in text(h, h["start"], h["start"] + h["length"])] or holes
  if not holes:
    return "(no held-out hole to show)"
  h = holes[0]
  end = h["start"] + h["length"]
  [(written, stopped)] = infill_eval.fill_holes(cfg, params, docs, cache.special_ids,
                                                cache.model_vocab_size, [h], max_new=max_new,
                                                positions=config.fim.positions, batch_size=1)
  truth, wrote = text(h, h["start"], end), tok.decode(written)
  before = text(h, 0, h["start"]).split("\n")[-context_lines - 1:]
  after = text(h, end, None).split("\n")[:context_lines + 1]
  hole_line = ("\n" if truth.startswith("\n") else "") + "<FILL>"
  shown = "\n".join(before) + hole_line + "\n".join(after)
  verdict = ("exact match" if wrote == truth and stopped else
             "right text, but it did not stop" if wrote.startswith(truth) else "differs")
  return (f"One held-out hole (validation file {int(h['doc'])}, a {kind} hole), step {step}:\n"
          + "\n".join("  | " + line for line in shown.split("\n")) +
          f"\n  model wrote: {wrote!r}{'' if stopped else ' (no end of middle)'}"
          f"\n  the file has: {truth!r}  -> {verdict}")


def _read_text(path: str) -> str:
  """A UTF-8 text file; UnicodeDecodeError for another encoding (latin-1) or a binary file."""
  with open(path, "rb") as f:
    data = f.read()
  if b"\0" in data:
    raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), data.index(b"\0") + 1,
                             "a binary file")
  return data.decode("utf-8")


def main(argv=None) -> int:
  args = _args(sys.argv[1:] if argv is None else argv)
  err = lambda msg: print(f"error: {msg}", file=sys.stderr)
  try:
    text = _read_text(args.file)
  except OSError as e:
    err(f"cannot read {args.file}: {e.strerror}")
    return 2
  except UnicodeDecodeError as e:
    err(f"{args.file} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}: "
        f"{e.reason}): save the workflow as UTF-8")
    return 2
  if args.out and (problem := cli.output_error(args.out)):
    err(f"--out {problem}")
    return 2
  if args.hole is None and not find_holes(text):
    err(f"{args.file} has no hole: mark one with {MARKER} (alone on a line for a whole line, "
        "inside a line for a span)")
    return 2
  try:
    model = api.load(args.workdir, step=args.step)
    if args.hole is not None:
      name = model.tokenizer.name
      raise InfillError(
          f"--hole {args.hole}: hole paths are not supported yet (a {name} model: "
          + ("TCT encodes whole JSON documents only" if name == "tct" else
             f"mark the hole with {MARKER} in the file instead") + "; see docs/infill.md)")
    out = model.infill(text, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                       max_tokens=args.max_tokens, seed=args.seed, stop=args.stop,
                       log=lambda m: print(m, file=sys.stderr))
  except (InfillError, FileNotFoundError, ValueError) as e:
    err(str(e).splitlines()[0] if str(e) else type(e).__name__)
    return 2 if isinstance(e, InfillError) else 1
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      f.write(out)
  else:
    sys.stdout.write(out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
