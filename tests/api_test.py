"""The Python API and the tools on a model that left its workdir: a copied checkpoints folder
(no token cache, no corpus), old checkpoints without their tokenizer, tokenizer mismatches."""

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fimjax
from fimjax import api
from fimjax import checkpoint
from fimjax import inference
from fimjax import step as step_lib
from fimjax.data import cache as cache_lib
from fimjax.cli import evaluate as evaluate_cli
from fimjax.cli import generate as generate_cli
from fimjax.cli import infill as infill_cli
from fimjax.data import tokenizers as tok_lib
from tests.infill_test import TEXT
from tests.tokenizers_test import _fake_tct

WORKFLOW = "name: CI\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n"


def _copy(trained_workdir, checkpoints, cache=None):
  """The run's checkpoints copied to `checkpoints` (and its cache to `cache`). The fixture's run
  names its cache folder (data.cache_dir); the copy forgets it, as a run with the default
  (<workdir>/cache) has no path to it."""
  shutil.copytree(trained_workdir / "checkpoints", checkpoints)
  for config in checkpoints.glob("*/config/metadata"):
    saved = json.loads(config.read_text())
    saved["data"]["cache_dir"] = ""
    config.write_text(json.dumps(saved))
  if cache:
    shutil.copytree(trained_workdir / "cache", cache)


@pytest.fixture(scope="module")
def copied(trained_workdir, tmp_path_factory):
  """Only the run's checkpoints, under another name: no cache, no corpus, no workdir."""
  dst = tmp_path_factory.mktemp("copy") / "my-model"
  _copy(trained_workdir, dst)
  return dst


@pytest.fixture(scope="module")
def model(copied):
  return fimjax.load(copied)


def _one_line_error(capsys) -> str:
  err = capsys.readouterr().err
  assert err.count("\n") == 1, err
  return err


def test_a_copied_checkpoints_folder_is_self_contained(model, copied, trained_workdir):
  run = cache_lib.load_cache(trained_workdir / "cache")
  assert model.step == 2 and model.tokenizer_id == cache_lib.tokenizer_id(run.meta)
  assert model.special_ids == run.special_ids and model.config.model.d_model == 32
  assert np.isfinite(model.eval_metrics["eval_loss"])  # saved with the step
  filled = model.infill(TEXT, max_tokens=4)
  holes = inference.find_holes(TEXT)
  assert "<FILL>" not in filled and filled.startswith(TEXT[: holes[0].start])
  assert filled.endswith(TEXT[holes[1].end :])
  docs = model.generate(2, max_tokens=12, seed=1)
  assert len(docs) == 2 and all(isinstance(d, str) for d in docs)
  assert docs == model.generate(2, max_tokens=12, seed=1)  # seeded
  by_step = fimjax.load(copied / "2")  # one step folder
  assert by_step.step == 2 and by_step.infill(TEXT, max_tokens=4) == filled


def test_cli_tools_run_from_the_copy(model, copied, tmp_path, capsys):
  path = tmp_path / "wf.yml"
  path.write_text(TEXT)
  assert infill_cli.main(["--model", str(copied), str(path), "--max_tokens", "4"]) == 0
  assert capsys.readouterr().out == model.infill(TEXT, max_tokens=4)  # the same greedy fill
  assert (
    generate_cli.main(["--workdir", str(copied), "--num", "2", "--json", "--max_tokens", "12"]) == 0
  )
  report = json.loads(capsys.readouterr().out)
  assert report["num"] == 2 and report["step"] == 2
  assert generate_cli.main(["--workdir", str(copied), "--schema", str(tmp_path / "no.json")]) == 1
  assert "--schema" in _one_line_error(capsys)


def test_evaluate_from_the_copy_needs_a_corpus_for_its_losses(copied, tmp_path, capsys):
  assert evaluate_cli.main(["--workdir", str(copied), "--generate_samples", "1"]) == 1
  assert "pass --corpus" in _one_line_error(capsys)
  folder = tmp_path / "repo"
  folder.mkdir()
  (folder / "ci.yml").write_text(WORKFLOW)
  # No --schema: the workflow schema shipped with fimjax gives the schema-valid rate.
  assert (
    evaluate_cli.main(
      [
        "--workdir",
        str(copied),
        "--corpus",
        str(folder),
        "--infill_holes",
        "1",
        "--generate_samples",
        "1",
        "--max_new_tokens",
        "8",
      ]
    )
    == 0
  )
  report = json.loads(capsys.readouterr().out)
  assert 0 <= report["gen_schema_valid_rate"] <= 1 and report["step"] == 2
  assert (
    evaluate_cli.main(
      ["--workdir", str(copied), "--corpus", str(folder), "--schema", str(tmp_path / "no.json")]
    )
    == 1
  )
  assert "fix --schema" in _one_line_error(capsys)


def test_score_is_the_training_loss_of_each_token(model):
  cfg, sp = model.model_config, model.special_ids
  toks = model.tokenizer.encode(WORKFLOW * 6)
  assert len(toks) + 1 > cfg.context  # read in windows
  losses = model.score(WORKFLOW * 6)
  assert losses.shape == (len(toks) + 1,) and np.all(np.isfinite(losses))
  seq = np.array([[sp["bos"], *toks, sp["eos"]]], np.int32)
  n = cfg.context
  want = step_lib.token_losses(
    cfg,
    model.params,
    {
      "tokens": seq[:, :n],
      "pos": np.arange(n)[None],
      "gap": np.zeros((1, n), np.int32),
      "targets": seq[:, 1 : n + 1],
    },
  )
  np.testing.assert_allclose(losses[:n], np.asarray(want)[0], rtol=1e-5, atol=1e-5)
  # The next window starts half a context back, at its true positions, and scores the rest.
  s = n // 2
  want = step_lib.token_losses(
    cfg,
    model.params,
    {
      "tokens": seq[:, s : s + n],
      "pos": np.arange(s, s + n)[None],
      "gap": np.zeros((1, n), np.int32),
      "targets": seq[:, s + 1 : s + n + 1],
    },
  )
  np.testing.assert_allclose(losses[n : s + n], np.asarray(want)[0, n - s :], rtol=1e-5, atol=1e-5)


def test_sampling_options_are_checked(model):
  with pytest.raises(ValueError, match="top_p=0"):
    model.infill(TEXT, top_p=0)
  with pytest.raises(ValueError, match="stop='word'"):
    model.infill(TEXT, stop="word")
  with pytest.raises(ValueError, match="temperature=-1"):
    model.generate(1, temperature=-1)


def test_old_checkpoint_reads_its_tokenizer_from_the_run_cache(trained_workdir, tmp_path):
  run = tmp_path / "run"
  _copy(trained_workdir, run / "checkpoints", run / "cache")
  shutil.rmtree(run / "checkpoints" / "2" / checkpoint.INFERENCE)  # as saved before it existed
  old = fimjax.load(run)
  assert old.step == 2 and old.eval_metrics is None
  assert old.tokenizer_id == cache_lib.tokenizer_id(cache_lib.load_cache(run / "cache").meta)
  shutil.rmtree(run / "cache")
  with pytest.raises(FileNotFoundError, match="predates"):
    fimjax.load(run)


def test_another_tokenizer_is_refused_naming_both(trained_workdir, copied, tmp_path, capsys):
  other = tok_lib.BpeTokenizer.train([WORKFLOW * 3, "on: [push]\n"], vocab_size=300)
  with pytest.raises(ValueError, match="tokenizer mismatch") as e:
    fimjax.load(copied, tokenizer=other)
  msg = str(e.value)
  assert "\n" not in msg and api.tokenizer_id(other) in msg
  assert fimjax.load(copied).tokenizer_id in msg
  # A run whose cache was rebuilt with another tokenizer: evaluate refuses its cache.
  run = tmp_path / "run"
  _copy(trained_workdir, run / "checkpoints")
  cache_lib.build_cache(
    ["synthetic:4"],
    run / "cache",
    tokenizer="bpe",
    bpe_vocab_size=300,
    progress=False,
    log=lambda m: None,
  )
  assert evaluate_cli.main(["--workdir", str(run), "--generate_samples", "0"]) == 1
  assert "tokenizer mismatch" in _one_line_error(capsys)
  # ... and so does loading an old checkpoint (no tokenizer of its own) from it.
  shutil.rmtree(run / "checkpoints" / "2" / checkpoint.INFERENCE)
  with pytest.raises(ValueError, match="tokenizer mismatch.*the token cache"):
    fimjax.load(run)


def test_import_fimjax_loads_the_api_lazily():
  code = (
    "import sys, fimjax; assert not {'fimjax.api', 'flax', 'orbax'} & sys.modules.keys(), "
    "sorted(sys.modules)"
  )
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
  assert fimjax.load is api.load


def test_a_damaged_inference_item_is_named_and_moved_aside_on_resume(trained_workdir, tmp_path):
  run = tmp_path / "run"
  _copy(trained_workdir, run / "checkpoints")
  (run / "checkpoints" / "2" / checkpoint.INFERENCE / "metadata").write_text('{"tok')
  with pytest.raises(ValueError, match=r"2/inference/metadata is not valid JSON.*retrain"):
    fimjax.load(run)
  ckpts = checkpoint.Checkpoints(str(run))
  try:
    assert ckpts.latest_json() == (None, None, None)  # what a resumed run reads first
  finally:
    ckpts.close()
  assert (run / "checkpoints_unreadable" / "2").is_dir()


def test_readme_example_runs(copied, capsys):
  readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
  section = readme[readme.index("## Use the model") :]
  start = section.index("```python\n") + len("```python\n")
  code = section[start : section.index("```", start)]
  assert "fimjax.load(" in code and "m.infill(" in code and "m.score(" in code
  code = code.replace("\"runs/tiny\"", repr(str(copied))).replace("max_tokens=256", "max_tokens=24")
  exec(compile(code, "README.md", "exec"), {})  # shorter samples: fewer window shapes to compile
  assert "nats/token" in capsys.readouterr().out


def test_a_tct_checkpoint_names_its_module_and_refuses_another_version(monkeypatch):
  monkeypatch.setitem(sys.modules, "fake_tct", _fake_tct(version="1.2.3"))
  tok = tok_lib.TctTokenizer("fake_tct")
  meta = {"tokenizer": "tct", "tokenizer_version": tok.version}
  cache = type(
    "Cache",
    (),
    {
      "meta": meta,
      "special_ids": {"pad": 8191, "bos": 8192},
      "model_vocab_size": 8197,
      "tokenizer": lambda self: tok,
    },
  )()
  record = checkpoint.inference_record(
    cache, {"model": {"d_model": 32}, "fim": {"positions": "continued"}}
  )
  assert record["tokenizer"]["module"] == "fake_tct" and "json" not in record["tokenizer"]
  assert api.tokenizer_id(api._tokenizer_of(record)) == cache_lib.tokenizer_id(meta)
  monkeypatch.setitem(sys.modules, "fake_tct", _fake_tct(version="2.0"))  # upgraded since
  assert api.tokenizer_id(api._tokenizer_of(record)) == "tct:fake_tct-2.0"
