# The house habits, by name. `make test` is the README's test command and what CI runs.
PYTHON ?= python

.PHONY: install build annotate test test-pure lint typecheck bench clean

install:            ## install conduit (compiling the extensions) and the test tools
	$(PYTHON) -m pip install -q -e '.[test]'

build:              ## rebuild the compiled twins in place after editing a .pyx
	$(PYTHON) setup.py -q build_ext --inplace

annotate:           ## Cython's HTML annotation of the hot modules (yellow = Python API)
	CONDUIT_ANNOTATE=1 $(PYTHON) setup.py -q build_ext --inplace --force
	@ls conduit/*/*.html

test: install       ## install, then every test; then the server tiers again on the pure twins
	$(PYTHON) -m pytest
	CONDUIT_EXTENSIONS=0 $(PYTHON) -m pytest -q tests/net tests/integration tests/conformance tests/fuzz tests/scale tests/e2e

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
