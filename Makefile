# Two commands do everything on a fresh machine: `make demo` (main job) and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test demo lab clean-venv

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "Python 3.11 is required ($(PY) not found); set PY=/path/to/python3.11"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name m2restore --display-name "Python (m2restore)"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest -q -n 2 --dist loadgroup tests

demo: $(STAMP)
	$(BIN)/python -m m2restore demo --out benchmarks/results/demo

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

clean-venv:
	rm -rf $(VENV)
