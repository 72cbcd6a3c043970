# The house habits, by name. `make test` is the README's test command and what CI runs.
PYTHON ?= python

.PHONY: install system-deps build annotate test test-pure test-pythons lint typecheck bench clean

install:            ## install conduit (compiling the extensions), the test tools and linters
	$(PYTHON) -m pip install -q -e '.[test,dev]'

system-deps:        ## Debian's chromium, curl and redis-server for the e2e/scale tiers, if missing
	tools/system-deps

build:              ## rebuild the compiled twins in place after editing a .pyx
	$(PYTHON) setup.py -q build_ext --inplace

annotate:           ## Cython's HTML annotation of the hot modules (yellow = Python API)
	CONDUIT_ANNOTATE=1 $(PYTHON) setup.py -q build_ext --inplace --force
	@ls conduit/*/*.html

test: system-deps install  ## set up, then every test; then the server tiers again on the pure twins
	$(PYTHON) -m pytest
	CONDUIT_EXTENSIONS=0 $(PYTHON) -m pytest -q tests/net tests/integration tests/conformance tests/fuzz tests/scale tests/e2e

test-pythons:       ## the unit, net and integration tiers, compiled, on Python 3.10 and 3.13
	tools/test-pythons 3.10 3.13

test-pure:          ## the whole suite with the extensions switched off
	CONDUIT_EXTENSIONS=0 $(PYTHON) -m pytest

lint:
	$(PYTHON) -m ruff check conduit tests bench
	cython-lint --max-line-length 100 conduit

typecheck:
	$(PYTHON) -m mypy

bench:              ## streaming throughput, and micro-benchmarks of framing and parsing
	$(PYTHON) bench/stream.py
	$(PYTHON) bench/stream.py --pure --events 10000 200000
	$(PYTHON) bench/micro_sse.py
	$(PYTHON) bench/micro_parser.py

clean:
	rm -rf build *.egg-info conduit/*/*.c conduit/*/*.so conduit/*/*.html
