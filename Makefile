# Two entry points (see README): `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: demo test install browser clean gpu-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch goes first and pinned (constraints.txt): a CPU machine with the local wheel takes it, a GPU
# machine gets the regular CUDA build; no later package may pull a different torch.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) "torch==2.13.0"
	$(PIP) -e ".[all,test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/tumorsyn generate --example --organ liver --size-mm 10-20 --seed 7 --out demo_out --preview --label-map
	@echo "demo: wrote demo_out/ (CT with tumour, mask, label map, manifest.jsonl, preview PNG)"

# The reader-study page is tested in a real browser: Debian's chromium (never a downloaded one). Where it
# cannot be installed (no apt, not root) the browser test skips and says why; nothing else depends on it.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
	  && apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } \
	  || echo "make: chromium not installed; the browser test will skip"

test: install browser
	$(BIN)/python -m pytest -n 2 -q -rs tests

# The GPU check (benchmarks/README.md): every GPU figure with the CPU figure beside it, in
# $(OUT)/gpu_check.json and gpu_check.md; under 8 minutes on a GPU machine. Without a GPU it runs the CPU
# half, says so and exits 0. Not part of `make test`; it installs nothing beyond `make install`.
OUT ?= gpu_check_out
gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py --out $(OUT)

clean:
	rm -rf $(VENV) demo_out gpu_check_out
