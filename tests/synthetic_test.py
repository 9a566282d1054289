"""The synthetic corpus (`synthetic:N`): valid workflows, deterministic, varied."""

import json
import re

import pytest
import yaml

from fimjax import synthetic
from fimjax.synthetic import generator

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SAMPLE = 500


def _load(text: str) -> dict:
  """YAML 1.1 reads the `on:` key as True; map it back to "on"."""
  doc = yaml.load(text, Loader=_Loader)
  assert isinstance(doc, dict)
  if True in doc:
    doc["on"] = doc.pop(True)
  return doc


@pytest.fixture(scope="module")
def docs():
  return synthetic.synthetic(num_generated=SAMPLE, seed=0)


@pytest.fixture(scope="module")
def validator(shared_schema):
  jsonschema = pytest.importorskip("jsonschema")
  schema = json.loads(shared_schema.read_text())
  return jsonschema.Draft7Validator(schema)


def test_names_and_order(docs):
  hand = synthetic.hand_written()
  assert 25 <= len(hand) <= 60
  assert len(docs) == len(hand) + SAMPLE
  assert docs[: len(hand)] == hand
  assert all(name.startswith("workflows/") and name.endswith((".yml", ".yaml")) for name, _ in hand)
  assert [name for name, _ in docs[len(hand) :]] == [
    f"generated/{i:05d}.yml" for i in range(SAMPLE)
  ]


def test_every_document_parses_as_a_workflow(docs):
  for name, text in docs:
    doc = _load(text)
    assert "on" in doc and doc["on"], name
    assert isinstance(doc.get("jobs"), dict) and doc["jobs"], name
    for job_id, job in doc["jobs"].items():
      assert "steps" in job or "uses" in job, (name, job_id)


def test_on_key_is_written_unquoted(docs):
  for name, text in docs:
    assert re.search(r"^on:", text, re.M), name


def test_documents_pass_the_workflow_schema(docs, validator):
  for name, text in docs:
    errors = [e.message for e in validator.iter_errors(_load(text))]
    assert not errors, (name, errors[:3])


def test_text_encodes_the_generated_structure():
  """The emitter's quoting and block scalars read back as the data that was meant."""
  for i in range(200):
    text, data = generator.generate_with_data(i, seed=3)
    assert yaml.load(text, Loader=_Loader) == data, text


def test_deterministic():
  a = synthetic.synthetic(num_generated=50, seed=1)
  b = synthetic.synthetic(num_generated=50, seed=1)
  assert a == b
  c = synthetic.synthetic(num_generated=50, seed=2)
  assert [t for _, t in a] != [t for _, t in c]
  assert generator.generate(17, seed=1) == a[-50 + 17][1]


def test_variety(docs):
  generated = [text for name, text in docs if name.startswith("generated/")][:200]
  markers = {
    "python": "setup-python",
    "node": "setup-node",
    "go": "setup-go",
    "rust": "cargo ",
    "java": "setup-java",
    "ruby": "setup-ruby",
    "dotnet": "setup-dotnet",
    "docker": "docker/",
  }
  seen = {eco for eco, marker in markers.items() if any(marker in t for t in generated)}
  assert len(seen) >= 6, seen
  assert len(set(generated)) == len(generated)
  lengths = sorted(len(t) for t in generated)
  assert lengths[0] < lengths[-1]
  assert 600 < lengths[len(lengths) // 2] < 4000
  for key in (
    "schedule:",
    "workflow_dispatch:",
    "matrix:",
    "needs:",
    "upload-artifact",
    "cache",
    "if:",
  ):
    assert any(key in t for t in generated), key


def test_hand_written_files_are_varied():
  texts = [t for _, t in synthetic.hand_written()]
  for key in (
    "services:",
    "workflow_call:",
    "workflow_dispatch:",
    "schedule:",
    "concurrency:",
    "permissions:",
    "environment:",
    "matrix:",
    "upload-artifact",
    "actions/cache",
  ):
    assert any(key in t for t in texts), key
