# Every target works on a fresh clone without root: the venv holds everything, including ffmpeg
# (from the imageio-ffmpeg wheel when no system ffmpeg is on PATH).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch and torchvision are pinned in the same pip command as the package: a second, unpinned
# pip call would let the resolver swap torch for another build.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: install test demo model bench lint completions clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' $(TORCH_PINS)
	touch $(STAMP)

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m vabcli.cli.demo demo-out

# Rebuilds the bundled model (codec, image tower, VAB checkpoint) from scratch into
# vabcli/weights/builtin (README: how long, where). build/model keeps the stages, so an
# interrupted build continues; `make model FORCE=--force` starts over, DEVICE=cuda uses a GPU,
# RECIPE="--recipe data_clips=2000" changes a field of the recipe (make_model.Recipe).
DEVICE ?= auto
model: install
	HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m vabcli.world.make_model build/model \
		--device $(DEVICE) $(FORCE) $(RECIPE)

bench: install
	$(BIN)/python benchmarks/extract_throughput.py

lint: install
	$(BIN)/ruff check vabcli tests benchmarks
	$(BIN)/ruff format --check vabcli tests benchmarks
	$(BIN)/lint-imports --no-logo

completions: install
	$(BIN)/python -m vabcli.cli.completions completions

clean:
	rm -rf $(VENV) demo-out build .pytest_cache
