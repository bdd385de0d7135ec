# Ada3D for QGIS. The README's two commands are `make demo` and `make test`;
# both set the environment up first when needed.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
export QT_QPA_PLATFORM ?= offscreen
# Training runs on all cores by default; set THREADS to share the machine.
THREADS ?= 2

.PHONY: setup test lint gpu-check demo package deploy train train-r2 train-r4 train-any train-any-r2 train-any-r4 export export-any bench-quality bench-speed bench-memory bench-batch clean

setup: $(STAMP)
$(STAMP): scripts/setup.sh requirements.txt
	bash scripts/setup.sh
	touch $@

test: lint
	$(PY) -m pytest -q -p no:cacheprovider

# What plugins.qgis.org's upload scan runs (Bandit, on the packaged plugin
# folder) and the Qt6 / Python 3.9 forms check, besides ruff.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m bandit -q -r ada3d_qgis
	$(PY) scripts/check_compat.py ada3d_qgis

demo: $(STAMP)
	$(PY) -m scripts.demo

# CUDA really runs each shipped model (float32 and float16), parity with the
# CPU, the engine timed on a 4096^2 mosaic; GPU_CHECK_ARGS=--dry-run without a GPU.
gpu-check: $(STAMP)
	$(PY) -m scripts.gpu_check $(GPU_CHECK_ARGS)

package: $(STAMP)
	$(PY) scripts/package.py

deploy: package
	bash scripts/deploy.sh

# Shipped weights: the small CPU configuration (98 k parameters) trained on the
# FuseBox Landsat 7 groups, validated on group P091R083. Training resumes
# from runs/rN/last.pt, so an interrupted run continues where it stopped, up to
# EPOCHS_Rn epochs of 512 samples. Training is deterministic for its seed: the
# shipped .onnx files are the best validation epochs, 7 for ratio 2 and 25 for
# ratio 4 (ada3d_qgis/models metadata, "epochs"), reproduced from nothing by
# `rm -rf runs/r2 runs/r4 && make train EPOCHS_R2=7 EPOCHS_R4=25 THREADS=1`
# then `make export`.
FUSEBOX ?= ../shared/data/landsat7_fusebox
SMALL := --channels 16 --spatial-channels 16 --layers 2 --spatial-hidden 4 --spectral-hidden 4 --res-channels 8
EPOCHS_R2 ?= 40
EPOCHS_R4 ?= 40
train: train-r2 train-r4
train-r2: $(STAMP)
	$(PY) -m model_export.train --fusebox $(FUSEBOX) --ratio 2 $(SMALL) --threads $(THREADS) \
		--epochs $(EPOCHS_R2) --out runs/r2 --resume
train-r4: $(STAMP)
	$(PY) -m model_export.train --fusebox $(FUSEBOX) --ratio 4 $(SMALL) --threads $(THREADS) \
		--epochs $(EPOCHS_R4) --out runs/r4 --resume

# Issue 18: one band-agnostic network for 3 to 6 bands (random subsets and
# orders of B, G, R, NIR, SWIR1, SWIR2 per batch), resumable like the others.
# --grad-checkpoint: without it a step holds every tap's product for the backward
# pass, about 6-9 GB at six bands.
ANY := $(SMALL) --band-agnostic --bands 2,1,0,3,4,5 --random-bands 3,6 --grad-checkpoint
EPOCHS_ANY ?= 40
train-any: train-any-r2 train-any-r4
train-any-r2: $(STAMP)
	$(PY) -m model_export.train --fusebox $(FUSEBOX) --ratio 2 $(ANY) --threads $(THREADS) \
		--epochs $(EPOCHS_ANY) --out runs/any_r2 --resume
train-any-r4: $(STAMP)
	$(PY) -m model_export.train --fusebox $(FUSEBOX) --ratio 4 $(ANY) --threads $(THREADS) \
		--epochs $(EPOCHS_ANY) --out runs/any_r4 --resume

LANDSAT_CARD := Ada3D for Landsat 7/8/9 (ratio 2: 30 m MS, 15 m PAN), bands B, G, R, NIR.
VHR_CARD := Ada3D for 4-band very-high-resolution sensors (ratio 4: IKONOS, QuickBird, GeoEye, Pleiades, WorldView B, G, R, NIR), trained on Landsat data degraded to ratio 4.
# The band-agnostic models: the band counts they declare (the plugin refuses others).
ANY_RANGE ?= 3,8
ANY_R2_CARD := Band-agnostic Ada3D at ratio 2 (Landsat-like: 30 m MS, 15 m PAN) for 3 to 8 bands; trained on random subsets (3 to 6 bands, any order) of Landsat 7 B, G, R, NIR, SWIR1, SWIR2; 7 and 8 bands checked only on a proxy made from those six bands.
ANY_R4_CARD := Band-agnostic Ada3D at ratio 4 (very-high-resolution sensors, e.g. 8-band WorldView) for 3 to 8 bands; trained on random subsets (3 to 6 bands, any order) of Landsat 7 B, G, R, NIR, SWIR1, SWIR2 degraded to ratio 4; 7 and 8 bands checked only on a proxy made from those six bands.
export: export-any $(STAMP)
	$(PY) -m model_export.export --checkpoint runs/r2/best.pt \
		--out ada3d_qgis/models/ada3d_r2_4b_landsat.onnx --name ada3d-landsat-r2 --description "$(LANDSAT_CARD)"
	$(PY) -m model_export.export --checkpoint runs/r4/best.pt \
		--out ada3d_qgis/models/ada3d_r4_4b_vhr.onnx --name ada3d-vhr-r4 --description "$(VHR_CARD)"
export-any: $(STAMP)
	$(PY) -m model_export.export --checkpoint runs/any_r2/best.pt --band-range $(ANY_RANGE) \
		--out ada3d_qgis/models/ada3d_r2_any_landsat.onnx --name ada3d-any-r2 --description "$(ANY_R2_CARD)"
	$(PY) -m model_export.export --checkpoint runs/any_r4/best.pt --band-range $(ANY_RANGE) \
		--out ada3d_qgis/models/ada3d_r4_any_vhr.onnx --name ada3d-any-r4 --description "$(ANY_R4_CARD)"

# Every table of docs/quality_*: four bands with both kinds of model (and the
# consistency projection), then the other band counts with the model the
# plugin chooses for them (the 8-band case is a proxy: bench/quality.py).
MODELS := ada3d_qgis/models
bench-quality: $(STAMP)
	$(PY) -m bench.quality --ratio 2 --projection \
		--model $(MODELS)/ada3d_r2_4b_landsat.onnx --model $(MODELS)/ada3d_r2_any_landsat.onnx
	$(PY) -m bench.quality --ratio 4 --projection \
		--model $(MODELS)/ada3d_r4_4b_vhr.onnx --model $(MODELS)/ada3d_r4_any_vhr.onnx
	for n in 6 3 5 8; do $(PY) -m bench.quality --bands $$n || exit 1; done
	$(PY) -m bench.quality_summary

bench-speed: $(STAMP)
	$(PY) -m bench.speed

bench-memory: $(STAMP)
	$(PY) -m bench.memory

# python -m ada3d_qgis.batch with 1 and 2 workers on 1024^2 mosaics; writes docs/batch.md.
bench-batch: $(STAMP)
	$(PY) -m bench.batch

clean:
	rm -rf dist build demo_output .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
