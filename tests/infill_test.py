"""Infilling a file: hole syntax, the context each hole sees, and the CLI as a user meets it."""

import numpy as np
import pytest

from fimjax import inference as infill
from fimjax import sample as sample_lib
from fimjax.cli import infill as infill_cli

SP = {"pad": 255, "bos": 256, "eos": 257, "mask": 258, "mid": 259, "eom": 260}

TEXT = """name: CI
on: push
jobs:
  build:
    runs-on: <FILL>
    steps:
      - uses: actions/checkout@v4
      <FILL>
      - run: make test
"""


class ByteTokenizer:
  """A lossless stand-in for BPE: one id per byte."""

  name = "bpe"

  def encode(self, text):
    return list(text.encode())

  def decode(self, ids):
    return bytes(ids).decode(errors="replace")


def test_find_holes_line_and_span():
  holes = infill.find_holes(TEXT)
  assert [h.kind for h in holes] == ["span", "line"]
  span, line = holes
  assert TEXT[span.start : span.end] == " <FILL>"  # the space before belongs to the hole
  assert TEXT[line.start : line.end] == "\n      <FILL>"  # newline + indentation + marker
  assert TEXT[: span.start].endswith("runs-on:")
  assert TEXT[line.end :].startswith("\n      - run: make test")
  first = infill.find_holes("<FILL>\nrest\n")
  assert first[0].kind == "line" and (first[0].start, first[0].end) == (0, 6)
  assert infill.find_holes("no hole here\n") == []


def test_crop_keeps_the_nearest_context():
  assert sample_lib.crop(list(range(10)), list(range(10)), 30) == (0, 10)
  assert sample_lib.crop(list(range(100)), list(range(100)), 20) == (90, 10)
  assert sample_lib.crop(list(range(3)), list(range(100)), 20) == (0, 17)  # unused prefix room
  assert sample_lib.crop(list(range(100)), list(range(4)), 20) == (84, 4)


def test_holes_are_filled_left_to_right_with_the_rest_as_context(monkeypatch):
  seen = []

  def fake_sample(
    cfg, params, prompts, special_ids, vocab, *, mode, sc, seed, positions, stop_before, rows
  ):
    del stop_before, rows
    assert len(prompts) == 1  # one file: one prompt (`sample` pads the batch itself)
    assert positions == "collapsed"
    seen.append(prompts[0])
    return sample_lib.Result([list(f" X{len(seen)}".encode())], [True])

  monkeypatch.setattr(sample_lib, "sample", fake_sample)
  cfg = type("Cfg", (), {"context": 512})()
  out = infill.fill(
    TEXT,
    ByteTokenizer(),
    cfg,
    None,
    SP,
    261,
    sc=sample_lib.SampleConfig(max_new=16),
    positions="collapsed",
  )
  assert out == TEXT.replace(" <FILL>", " X1", 1).replace("\n      <FILL>", " X2")
  first, second = (p.tokens.tolist() for p in seen)
  # Hole 1: BOS + prefix, MASK, the text up to hole 2 (no EOS: the window ends mid-document), MID.
  cut = TEXT.index("\n      <FILL>")
  assert first == (
    [SP["bos"]]
    + list(TEXT[: TEXT.index(" <FILL>")].encode())
    + [SP["mask"]]
    + list(TEXT[TEXT.index(" <FILL>") + 7 : cut].encode())
    + [SP["mid"]]
  )
  # Hole 2: hole 1 already filled in its prefix; its suffix runs to the end, then EOS.
  assert bytes(second[1 : second.index(SP["mask"])]).decode() == out[: out.index(" X2")]
  assert second[-2:] == [SP["eos"], SP["mid"]]
  mask_at = second.index(SP["mask"])
  assert seen[1].pos[mask_at] == mask_at and seen[1].pos[-1] == mask_at
  assert seen[1].gap.tolist() == [0] * (len(second) - 1) + [1]


def test_long_context_is_cropped_with_true_positions():
  p = sample_lib.hole_prompt(
    list(range(100)), list(range(100)), SP, context=64, max_new=20, last=True, positions="continued"
  )
  assert len(p.tokens) + 20 <= 64
  assert p.tokens[0] != SP["bos"] and SP["eos"] not in p.tokens.tolist()  # both sides cropped
  assert p.pos[0] == 100 - p.tokens.tolist().index(SP["mask"]) + 1  # doc position (BOS = 0)


def test_tct_holes_are_refused_in_one_line():
  tct = type("Tct", (), {"name": "tct"})()
  with pytest.raises(infill.InfillError, match="whole JSON documents only"):
    infill.fill(TEXT, tct, None, None, SP, 261, sc=sample_lib.SampleConfig(), positions="continued")


# ------------------------------------------------------------------------------------- the CLI


def _write(tmp_path, text):
  path = tmp_path / "wf.yml"
  path.write_text(text)
  return path


def test_cli_replaces_holes_and_keeps_the_rest(trained_workdir, tmp_path, capsys):
  path = _write(tmp_path, TEXT)
  out_path = tmp_path / "out.yml"
  rc = infill_cli.main(
    [
      "--workdir",
      str(trained_workdir),
      str(path),
      "--out",
      str(out_path),
      "--max_tokens",
      "6",
      "--temperature",
      "0.8",
      "--seed",
      "3",
    ]
  )
  assert rc == 0, capsys.readouterr().err
  out = out_path.read_text()
  holes = infill.find_holes(TEXT)
  assert "<FILL>" not in out
  assert out.startswith(TEXT[: holes[0].start])
  assert out.endswith(TEXT[holes[1].end :])
  between = TEXT[holes[0].end : holes[1].start]
  assert between in out[holes[0].start :]
  # Printing (no --out) gives the same text for the same seed.
  assert (
    infill_cli.main(
      [
        "--workdir",
        str(trained_workdir),
        str(path),
        "--max_tokens",
        "6",
        "--temperature",
        "0.8",
        "--seed",
        "3",
      ]
    )
    == 0
  )
  assert capsys.readouterr().out == out


def test_cli_errors_are_one_line(trained_workdir, tmp_path, capsys):
  no_hole = _write(tmp_path, "name: CI\non: push\n")
  assert infill_cli.main(["--workdir", str(trained_workdir), str(no_hole)]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "no hole" in err
  path = _write(tmp_path, TEXT)
  assert infill_cli.main(["--workdir", str(tmp_path / "nothing"), str(path)]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "no checkpoint" in err
  assert (
    infill_cli.main(["--workdir", str(trained_workdir), str(path), "--hole", "jobs.build.steps[1]"])
    == 2
  )
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "not supported" in err
  assert infill_cli.main(["--workdir", str(trained_workdir), str(tmp_path / "missing.yml")]) == 2
  assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("positions", ["collapsed", "continued", "sequential"])
def test_prompt_positions_match_training_layout(positions):
  """The FIM prompt of a hole equals the first cells of training's PSM example, and the
  sampler's decode steps continue its positions as training does."""
  from fimjax.data import fim as fim_lib  # pylint: disable=g-import-not-at-top

  doc = np.arange(10, 30)
  g, m = 6, 5  # middle = ext[6:11]: doc[5:10]
  ex = fim_lib.build_examples(
    doc,
    np.array([0]),
    np.array([20]),
    [0],
    [0],
    [22],
    [fim_lib.PSM],
    [g],
    [m],
    SP,
    positions=positions,
  )
  prompt = sample_lib.infill_prompt(doc[: g - 1], doc[g - 1 + m :], SP, positions=positions)
  k = len(prompt.tokens)
  for key in ("tokens", "pos", "gap"):
    assert ex[key][:k].tolist() == getattr(prompt, key).tolist(), key
  assert ex["tokens"][k:].tolist() == doc[g - 1 : g - 1 + m].tolist()  # the middle follows
  step = fim_lib.middle_pos_step(positions)
  assert ex["pos"][k:].tolist() == [int(prompt.pos[-1]) + step * (i + 1) for i in range(m)]
