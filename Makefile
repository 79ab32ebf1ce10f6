# Two entry points for a fresh machine (see README): `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PAINTING ?= src/napari_emosem/paintings/madame-cezanne-in-blue-1890.jpg
OUT ?= emosem-demo

.PHONY: setup demo test lint system-deps bench bench-queue screenshot clean

# One environment for the tool and its tests; torch pinned by constraints.txt.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# Propose for a painting offline (cold-start model), write masks, overlays and drafts into
# $(OUT)/, then open napari with the annotator when there is a display.
demo: setup
	$(VENV)/bin/emosem propose $(PAINTING) --out $(OUT) --view

# The linter, then every test, napari's included, under a virtual X server.
test: setup system-deps
	$(VENV)/bin/ruff check src tests benchmarks scripts
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest -q

# The linter, configured in pyproject.toml ([tool.ruff]).
lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts

system-deps:
	@scripts/install-system-deps

# Each benchmark prints a table and writes JSON to benchmarks/results/ (see README, Performance).
bench: setup
	$(PY) benchmarks/bench_vs_sam.py
	$(PY) benchmarks/bench_collection.py
	$(PY) benchmarks/bench_precision.py
	$(PY) benchmarks/bench_model.py
	$(PY) benchmarks/bench_train_cache.py
	$(PY) benchmarks/bench_starter.py
	$(PY) benchmarks/bench_dataset.py
	$(PY) benchmarks/bench_campaign.py
	xvfb-run -a $(PY) benchmarks/bench_responsiveness.py

# The queue study (docs/queue.md): simulated campaigns, about 40 min on 2 CPU cores.
bench-queue: setup
	$(PY) benchmarks/bench_queue.py

screenshot: setup system-deps
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) scripts/screenshot.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache benchmarks/results
