# Two commands from a fresh machine: `make demo` and `make test`.
# torch==2.13.0 is installed first so pip takes the local CPU wheel instead of the CUDA build.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
export SDL_VIDEODRIVER ?= dummy
export SDL_AUDIODRIVER ?= dummy

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# robomimic 0.3.0 for the format-compatibility tests; --no-deps because its torchvision
	# requirement would pull a CUDA torch (its dataset module needs only termcolor beyond ours)
	$(BIN)/python -m pip install --quiet --no-deps robomimic==0.3.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m iltk.demo

test: $(STAMP)
	@echo "make test: about 6 minutes on an idle 2-core CPU (a dot per test; the learning and"
	@echo "fault-injection tests come in long stretches). Quick pass: .venv/bin/pytest -m 'not expensive and not xserver'"
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check iltk teleop tests benchmarks
	$(BIN)/ruff format --check iltk teleop tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/env_speed.py

clean:
	rm -rf $(VENV) runs build *.egg-info
