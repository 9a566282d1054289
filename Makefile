# The two commands of the README. Both set everything up on a fresh machine.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: train test bench format clean

$(STAMP): pyproject.toml
	@PYTHON=$$(scripts/find_python.sh) && echo "using $$PYTHON" && \
	  { [ -x $(PY) ] || $$PYTHON -m venv $(VENV); } && \
	  $(PY) -m pip install --quiet --upgrade pip && \
	  $(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

train: $(STAMP)
	$(PY) -m fimjax.main --config configs/tiny.py --workdir runs/tiny

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests

bench: $(STAMP)
	$(PY) -m bench

format: $(STAMP)
	$(PY) -m ruff format fimjax tests bench configs scripts

clean:
	rm -rf $(VENV) runs
