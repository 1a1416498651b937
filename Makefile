# Two entry points: `make demo` (main job on the bundled real scenes) and `make test`.
# Both create the virtual environment on first use; torch==2.13.0 (CPU) is installed first
# so that pip never resolves a CUDA build.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[torch,dev]'
	# the reference LPIPS package for the tests; --no-deps: its torchvision requirement would pull a CUDA torch
	$(PY) -m pip install -q --no-deps lpips==0.1.4
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/plenopack demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2

bench: $(STAMP)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
