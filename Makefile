# pacsdash: `make demo` and `make test` do all set-up from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOME_DIR ?= pacsdash-demo
HTTP_PORT ?= 8042
DICOM_PORT ?= 4242

.PHONY: demo test bench soak notebooks venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: venv
	$(VENV)/bin/pacsdash demo --home $(HOME_DIR) --http-port $(HTTP_PORT) --dicom-port $(DICOM_PORT)

test: venv
	$(PY) -m pytest

notebooks: venv
	$(PY) -m pip install --quiet -e '.[test,notebooks]'
	$(VENV)/bin/jupyter lab notebooks/

bench: venv
	$(PY) -m benchmarks.run $(BENCH_ARGS)

soak: venv
	$(PY) -m benchmarks.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(HOME_DIR) .pytest_cache benchmarks/work
