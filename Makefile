# Ada3D for QGIS. The README's two commands are `make demo` and `make test`;
# both set the environment up first when needed.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
export QT_QPA_PLATFORM ?= offscreen
# Training runs on all cores by default; set THREADS to share the machine.
THREADS ?= 2

.PHONY: setup test lint demo package deploy train train-r2 train-r4 export bench-quality bench-speed clean

setup: $(STAMP)
$(STAMP): scripts/setup.sh requirements.txt
	bash scripts/setup.sh
	touch $@

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(PY) -m ruff check .

demo: $(STAMP)
	$(PY) -m scripts.demo

package: $(STAMP)
	$(PY) scripts/package.py

deploy: package
	bash scripts/deploy.sh

clean:
	rm -rf dist build demo_output .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
