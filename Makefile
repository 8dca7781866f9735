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

.PHONY: demo test test-python test-js test-wheel test-ui bench bench-zoo install clean

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
	# tests/, then every >>> example in compound/ as a doctest (pyproject: testpaths, --doctest-modules)
	$(PY) -m pytest $(PYTEST_ARGS)
	# notebooks, strictly (outputs compared); the zoo they load was built by the tests above, in the same cache
	$(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks/
	$(MAKE) test-js test-wheel test-ui

# --- JupyterLab extension: jest, the wheel without node, Galata in Debian's chromium -------------------------
# jlpm (yarn) comes with jupyter-builder in the venv; node itself must be on the machine (CI image has it).
VENV_BIN    := $(abspath $(VENV))/bin
WITH_VENV   := PATH="$(VENV_BIN):$$PATH"
EXT_SOURCES := $(wildcard extension/src/*.ts) $(wildcard extension/style/*) $(wildcard extension/schema/*) extension/package.json extension/tsconfig.json
EXT_DEPS    := extension/node_modules/.compound-installed
EXT_BUILT   := extension/lib/.compound-built
UI_DEPS     := tests/ui/node_modules/.compound-installed
CHROMIUM    ?= /usr/bin/chromium
WHEEL_DIR   := build/wheel
WHEEL_VENV  := build/wheel-venv
WHEEL_OK    := $(WHEEL_DIR)/.compound-checked

$(EXT_DEPS): extension/package.json extension/yarn.lock | $(STAMP)
	cd extension && $(WITH_VENV) jlpm install
	touch $@

# A production build, symlinked into the venv (jupyter-builder develop) so the lab serves what was just built.
$(EXT_BUILT): $(EXT_DEPS) $(EXT_SOURCES)
	cd extension && $(WITH_VENV) jlpm build:prod
	$(WITH_VENV) jupyter-builder develop --overwrite .
	touch $@

test-js: $(EXT_DEPS)
	cd extension && $(WITH_VENV) jlpm test

# The wheel alone enables the extension: install it (no deps) with jupyterlab into a throwaway venv whose PATH
# has no node, then `jupyter labextension list` must report compound-jupyterlab enabled and OK.
$(WHEEL_OK): $(EXT_BUILT) pyproject.toml $(wildcard compound/*.py)
	rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)
	$(PY) -m pip wheel -q . --no-deps -w $(WHEEL_DIR)
	test -x $(WHEEL_VENV)/bin/jupyter-lab || (python3 -m venv $(WHEEL_VENV) && $(WHEEL_VENV)/bin/pip install -q "jupyterlab>=4.6,<5")
	$(WHEEL_VENV)/bin/pip install -q --no-deps --force-reinstall $(WHEEL_DIR)/compound-*.whl
	env -i HOME="$$HOME" PATH="$(abspath $(WHEEL_VENV))/bin" /bin/sh -c '! command -v node'
	env -i HOME="$$HOME" PATH="$(abspath $(WHEEL_VENV))/bin" $(abspath $(WHEEL_VENV))/bin/jupyter labextension list 2>&1 \
	  | tee $(WHEEL_DIR)/labextension-list.txt | grep -E "compound-jupyterlab v[0-9.]+ .*enabled.*OK"
	@ls -l $(WHEEL_DIR)/compound-*.whl | awk '{print "wheel size:", $$5, "bytes", $$9}'
	touch $@

test-wheel: $(WHEEL_OK)

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

$(UI_DEPS): tests/ui/package.json tests/ui/yarn.lock | $(STAMP)
	cd tests/ui && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(WITH_VENV) jlpm install
	touch $@

# Screenshots: tests/ui/test-results/screenshots/*.png; traces of failures: tests/ui/test-results/*/trace.zip.
test-ui: $(EXT_BUILT) $(UI_DEPS) $(CHROMIUM)
	cd tests/ui && CI=1 CHROMIUM_PATH=$(CHROMIUM) $(WITH_VENV) jlpm playwright test

bench: $(STAMP)
	$(PY) bench/engine.py --quick

# how long a built zoo takes to load in a fresh process, against a bare from_pretrained of the same folders
bench-zoo: $(STAMP)
	$(PY) bench/zoo.py --quick

clean:
	rm -rf $(VENV) dist build compound/labextension
