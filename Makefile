# The two commands of the README do all set-up from a fresh clone:
#   make demo   creates .venv on first use, installs compound, runs the main job
#   make test   same set-up, then every test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.compound-installed
# Without a GPU take the CPU build of torch (a plain `torch` pulls a multi-GB CUDA build).
# Override on machines where this pin resolves differently, e.g. TORCH_SPEC="torch==2.13.0+cpu".
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: demo test test-python bench install clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "GPU found: installing the default (CUDA) torch"; $(PY) -m pip install -q "torch>=2.6"; \
	else \
	  echo "no GPU: installing the CPU build $(TORCH_SPEC)"; $(PY) -m pip install -q "$(TORCH_SPEC)"; \
	fi
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/compound demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/engine.py --quick

clean:
	rm -rf $(VENV) dist build compound/labextension
