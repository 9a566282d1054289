"""fimjax.export and the NumPy reference: files, config, tokenizer names, logits equal to JAX's."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fimjax import export
from fimjax import reference
from fimjax.cli import export as export_cli
from fimjax import sample as sample_lib
from fimjax.data import fim as fim_lib

# Short enough that the AR and FIM prompts packed in one row fit the tiny run's context of 64.
PREFIX = "on: push\njobs:\n  test:\n    runs-on:"
SUFFIX = "\n    steps:\n      - run: make test\n"


@pytest.fixture(scope="module")
def run(trained_workdir):
  """(workdir, config, cache, ModelConfig in fp32, params) of the trained tiny run."""
  from fimjax import checkpoint
  from fimjax import model as model_lib

  config, cache, state, _ = checkpoint.load_run(str(trained_workdir))
  cfg = dataclasses.replace(
    model_lib.ModelConfig.from_config(config, cache.model_vocab_size), dtype="float32"
  )
  return str(trained_workdir), config, cache, cfg, state["params"]


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
  out = tmp_path_factory.mktemp("export") / "fp32"
  assert export_cli.main(["--workdir", run[0], "--out", str(out)]) == 0
  return str(out)


def _jax_logits(cfg, params, tokens, pos, gap, seg=None):
  from fimjax import model as model_lib

  add = lambda a: None if a is None else np.asarray(a, np.int32)[None]  # noqa: E731
  return np.asarray(model_lib.apply(cfg, params, add(tokens), add(pos), add(gap), add(seg)))[0]


def _prompts(cache, positions):
  tok = cache.tokenizer()
  pre, suf = tok.encode(PREFIX), tok.encode(SUFFIX)
  return {
    "ar": sample_lib.generate_prompt(cache.special_ids, pre + suf),
    "fim": sample_lib.infill_prompt(pre, suf, cache.special_ids, positions=positions),
  }


def test_export_writes_files_and_config_round_trips(run, exported):
  _, config, cache, cfg, _ = run
  assert sorted(os.listdir(exported)) == [
    "README.md",
    "config.json",
    "model.safetensors",
    "tokenizer.json",
  ]
  with open(os.path.join(exported, "config.json")) as f:
    cj = json.load(f)
  assert export.model_config(cj) == dataclasses.replace(cfg, dtype=config.model.dtype)
  assert cj["special_ids"] == cache.special_ids
  assert cj["architecture"]["model_vocab_size"] == cache.model_vocab_size
  assert cj["inputs"]["fim_positions"] == config.fim.positions
  weights = reference.read_safetensors(os.path.join(exported, "model.safetensors"))
  assert {k: list(a.shape) for k, a in weights.items()} == {
    k: t["shape"] for k, t in cj["tensors"].items()
  }
  card = open(os.path.join(exported, "README.md")).read()
  assert f"step {cj['step']}" in card and "eval_loss" in card


def test_reference_logits_equal_jax_on_ar_and_fim_prompts(run, exported):
  _, config, cache, cfg, params = run
  m = reference.load(exported)
  for name, p in _prompts(cache, config.fim.positions).items():
    want = _jax_logits(cfg, params, p.tokens, p.pos, p.gap)
    got = reference.forward(m, p.tokens, p.pos, p.gap)
    assert np.abs(got - want).max() < 1e-4, name
    assert np.abs(want).max() > 0.1, name  # logits that carry information, not all ~0


def test_reference_segments_and_bf16_weights(run, tmp_path):
  """A packed row (AR then FIM, segment ids) and bf16 weights: same logits as JAX on the
  weights the file holds."""
  workdir, config, cache, cfg, _ = run
  assert export_cli.main(["--workdir", workdir, "--out", str(tmp_path), "--dtype", "bfloat16"]) == 0
  _, params16, _ = export.load_export(str(tmp_path))
  ps = list(_prompts(cache, config.fim.positions).values())
  row = {k: np.concatenate([getattr(p, k) for p in ps]) for k in ("tokens", "pos", "gap")}
  seg = np.repeat([1, 2], [len(p.tokens) for p in ps])
  want = _jax_logits(cfg, params16, row["tokens"], row["pos"], row["gap"], seg)
  got = reference.forward(reference.load(str(tmp_path)), row["tokens"], row["pos"], row["gap"], seg)
  assert np.abs(got - want).max() < 1e-4


def test_bf16_export_is_half_the_size(run, exported, tmp_path):
  assert export_cli.main(["--workdir", run[0], "--out", str(tmp_path), "--dtype", "bfloat16"]) == 0
  size = lambda d: os.path.getsize(os.path.join(d, "model.safetensors"))  # noqa: E731
  assert 0.45 < size(tmp_path) / size(exported) < 0.55
  assert json.load(open(tmp_path / "config.json"))["weights_dtype"] == "bfloat16"


def test_reference_greedy_equals_the_sampler(run, exported):
  _, config, cache, cfg, params = run
  m = reference.load(exported)
  sc = sample_lib.SampleConfig(temperature=0.0, max_new=6)
  for mode, p in zip(
    (sample_lib.GENERATE, sample_lib.INFILL), _prompts(cache, config.fim.positions).values()
  ):
    res = sample_lib.sample(
      cfg,
      params,
      [p],
      cache.special_ids,
      cache.model_vocab_size,
      mode=mode,
      sc=sc,
      positions=config.fim.positions,
    )
    got = reference.greedy(
      m, p.tokens, p.pos, p.gap, infill=mode == sample_lib.INFILL, max_new=sc.max_new
    )
    assert got == res.tokens[0], mode


@pytest.mark.parametrize("positions", fim_lib.POSITIONS)
def test_reference_prompts_equal_the_training_layout(positions):
  sp = {"pad": 99, "bos": 100, "eos": 101, "mask": 102, "mid": 103, "eom": 104}
  pre, suf = [5, 6, 7], [8, 9]
  for start, bos, eos in ((0, True, True), (4, False, False)):
    want = sample_lib.infill_prompt(
      pre, suf, sp, positions=positions, start=start, bos=bos, eos=eos
    )
    got = reference.fim_prompt(pre, suf, sp, positions, start=start, bos=bos, eos=eos)
    for k, a in zip(("tokens", "pos", "gap"), got):
      np.testing.assert_array_equal(a, getattr(want, k))
  window = [sp["bos"]] + pre + [1, 2] + suf + [sp["eos"]]  # middle [1, 2] at g = 4
  ex = fim_lib.fim_example(window, 4, 2, fim_lib.SPM, sp, positions=positions)
  got = reference.fim_prompt(pre, suf, sp, positions, spm=True)
  n = len(got[0])
  for k, a in zip(("tokens", "pos", "gap"), got):
    assert list(a) == ex[k][:n], k
  ar = sample_lib.generate_prompt(sp, pre, start=3)
  for k, a in zip(("tokens", "pos", "gap"), reference.ar_prompt(pre, sp, start=3)):
    np.testing.assert_array_equal(a, getattr(ar, k))


def test_tokenizer_json_names_the_specials_at_the_model_ids(run, exported):
  from tokenizers import Tokenizer

  _, _, cache, _, _ = run
  tok = Tokenizer.from_file(os.path.join(exported, "tokenizer.json"))
  for name, i in cache.special_ids.items():
    assert tok.token_to_id(export.TOKEN_NAMES[name]) == i, name
  text = PREFIX + SUFFIX
  assert tok.encode(text, add_special_tokens=False).ids == cache.tokenizer().encode(text)
  assert tok.encode("<|fim_middle|>").ids == [cache.special_ids["mid"]]


def test_tokenizer_with_fewer_merges_than_its_vocab_keeps_the_ids():
  """A BPE that learned fewer tokens than vocab_size - 1: fillers keep each name at its id."""
  from tokenizers import Tokenizer
  from fimjax.data import cache as cache_lib
  from fimjax.data import tokenizers as tok_lib

  bpe = tok_lib.BpeTokenizer.train(["on: push\njobs: {}\n"] * 3, vocab_size=400)
  assert bpe._tok.get_vocab_size() < 399  # pylint: disable=protected-access
  sp = cache_lib.special_ids(bpe.vocab_size, bpe.pad_id)
  tok = Tokenizer.from_str(export.tokenizer_with_specials(bpe.to_json(), sp))
  assert {n: tok.token_to_id(export.TOKEN_NAMES[n]) for n in sp} == sp


def test_tct_export_has_no_tokenizer_json(tmp_path):
  from fimjax import model as model_lib

  cfg = model_lib.ModelConfig(vocab_size=128, d_model=16, num_layers=1, num_heads=2, context=16)
  sp = {"pad": 99, "bos": 100, "eos": 101, "mask": 102, "mid": 103, "eom": 104}
  (tmp_path / "tokenizer.json").write_text("{}")  # an earlier export's
  export.write_export(
    str(tmp_path),
    cfg,
    model_lib.init_params(cfg, 0),
    model_vocab_size=105,
    special_ids=sp,
    tokenizer={"type": "tct", "module": "tct_x", "version": "tct_x-1.0"},
  )
  assert not (tmp_path / "tokenizer.json").exists()
  assert "tct_x" in (tmp_path / "README.md").read_text()


def test_a_copied_checkpoints_folder_exports_the_same_weights(run, exported, tmp_path):
  """No workdir, no token cache: the checkpoint carries its tokenizer (and its eval metrics)."""
  import shutil  # pylint: disable=g-import-not-at-top

  copy = tmp_path / "moved"
  shutil.copytree(os.path.join(run[0], "checkpoints"), copy)
  out = tmp_path / "from_copy"
  assert export_cli.main(["--model", str(copy), "--out", str(out)]) == 0
  assert (out / "tokenizer.json").read_text() == open(
    os.path.join(exported, "tokenizer.json")
  ).read()
  a, b = reference.load(str(out)).weights, reference.load(exported).weights
  assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
  cj = json.loads((out / "config.json").read_text())
  assert cj["training"]["metrics"]["eval_loss"] > 0 and cj["training"]["documents"]


def test_fimjax_load_opens_an_export_and_fills_as_the_checkpoint_does(run, exported):
  import fimjax  # pylint: disable=g-import-not-at-top

  text = PREFIX + " <FILL>" + SUFFIX
  from_ckpt, from_export = fimjax.load(run[0]), fimjax.load(exported)
  assert from_export.tokenizer_id == from_ckpt.tokenizer_id and from_export.step == from_ckpt.step
  assert from_export.positions == from_ckpt.positions
  assert from_export.infill(text, max_tokens=6) == from_ckpt.infill(text, max_tokens=6)
  np.testing.assert_allclose(from_export.score(PREFIX), from_ckpt.score(PREFIX), atol=1e-5)


def test_bad_workdir_and_out_are_one_line_errors(tmp_path, capsys):
  a_file = tmp_path / "f"
  a_file.write_text("x")
  cases = [
    (["--workdir", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], "no checkpoint"),
    (["--workdir", str(tmp_path), "--out", str(tmp_path / "o")], "no checkpoint"),
    (["--workdir", str(tmp_path), "--out", str(a_file)], "--out"),
    (["--workdir", str(tmp_path), "--out", str(a_file / "sub")], "--out"),
    (["--workdir", str(tmp_path), "--out", str(tmp_path / "o"), "--dtype", "f8"], "dtype"),
  ]
  for argv, says in cases:
    assert _exit_code(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and says in err, (argv, err)
  assert not (tmp_path / "o").exists()


def _exit_code(argv) -> int:
  try:
    return export_cli.main(argv)
  except SystemExit as e:  # a usage error
    return e.code


def test_reference_needs_only_numpy(exported):
  """reference.py copied out of the package runs with jax, flax and safetensors unimportable."""
  code = (
    "import sys, importlib.util\n"
    "for name in ('jax', 'flax', 'safetensors', 'ml_dtypes', 'fimjax'):\n"
    "  sys.modules[name] = None\n"
    f"spec = importlib.util.spec_from_file_location('reference', {reference.__file__!r})\n"
    "ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)\n"
    f"m = ref.load({exported!r})\n"
    "t, p, g = ref.fim_prompt([5, 6], [7], m.special, m.positions)\n"
    "print(ref.forward(m, t, p, g).shape)\n"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  vocab = json.load(open(os.path.join(exported, "config.json")))["architecture"]["vocab_size"]
  assert out.stdout.strip() == f"(7, {vocab})"  # BOS 5 6 MASK 7 EOS MID
