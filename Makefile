# Railcar Counter: set-up, tests, demo and packaging.
# `make demo` and `make test` install what they need (apt-get with sudo when
# not root, pip into .venv) and are quick when everything is there.

PY ?= /usr/bin/python3
VENV := .venv
VPY := $(VENV)/bin/python
BUILD := .build
PKG_LINK := $(BUILD)/railcar_counter
PLUGIN_NAME := railcar_counter
QGIS_PLUGINS_DIR ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default/python/plugins
PLUGIN_FILES := metadata.txt __init__.py LICENSE plugin resources
export QT_QPA_PLATFORM ?= offscreen

APT_PACKAGES := qgis python3-qgis qgis-providers python3-gdal gdal-bin python3-numpy \
	python3-shapely python3-matplotlib python3-pytest python3-pytestqt xvfb xauth \
	imagemagick python3-venv
PIP_PACKAGES := pytest-qgis==2.1.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Command-line counting: make count INPUT=scene.tif OUTPUT=cars.shp [AOI=..] [TRACKS=..]
INPUT ?=
OUTPUT ?=
AOI ?=
TRACKS ?=
SENSITIVITY ?=
DATE ?=
CRS ?=
OVERWRITE ?=
CLI := PYTHONPATH=$(BUILD) $(PY) -m $(PLUGIN_NAME).plugin.cli

.PHONY: setup venv link test demo count bench-accuracy bench-speed bench-robustness train-venv train train-verifier install uninstall zip clean

setup:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# The venv sees the apt packages (QGIS bindings, numpy, pytest); pip adds only
# pytest-qgis, without dependencies so it never replaces numpy or pytest.
$(VENV)/.done: | setup
	rm -rf $(VENV)
	$(PY) -m venv --system-site-packages $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check --no-deps $(PIP_PACKAGES)
	touch $@

venv: $(VENV)/.done

# The checkout as the package railcar_counter, whatever its folder is called.
# Relative, and remade every time, so a moved or copied checkout never
# imports another one's code.
link:
	@mkdir -p $(BUILD)
	@ln -sfn .. $(PKG_LINK)

test: setup venv link
	$(VPY) -m pytest tests -q

demo: setup link
	PYTHONPATH=$(BUILD) $(PY) -m $(PLUGIN_NAME).plugin.cli demo --out demo_output

count: setup link
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "Usage: make count INPUT=scene.tif OUTPUT=cars.shp [AOI=area.gpkg] [TRACKS=rails.gpkg] [SENSITIVITY=0.5] [DATE=YYYY-MM-DD] [CRS=EPSG:32652] [PIXEL_SIZE=0.5] [OVERWRITE=1]"; exit 2; }
	@$(CLI) count --input "$(INPUT)" --output "$(OUTPUT)" \
		$(if $(AOI),--aoi "$(AOI)") $(if $(TRACKS),--tracks "$(TRACKS)") \
		$(if $(SENSITIVITY),--sensitivity "$(SENSITIVITY)") $(if $(DATE),--date "$(DATE)") \
		$(if $(CRS),--crs "$(CRS)") $(if $(PIXEL_SIZE),--pixel-size "$(PIXEL_SIZE)") \
		$(if $(OVERWRITE),--overwrite)

bench-accuracy: setup link
	PYTHONPATH=$(BUILD) $(PY) tests/benchmarks/bench_accuracy.py

bench-speed: setup link
	PYTHONPATH=$(BUILD) $(PY) tests/benchmarks/bench_speed.py

bench-robustness: setup link
	PYTHONPATH=$(BUILD) $(PY) tests/benchmarks/bench_robustness.py

# Retrain the railcar network on generated scenes (development only: PyTorch
# goes into its own venv; the plugin runs the weights with numpy).
TRAIN_VENV := .venv-train
train-venv: setup link
	test -x $(TRAIN_VENV)/bin/python || $(PY) -m venv --system-site-packages $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/python -c "import torch" 2>/dev/null || $(TRAIN_VENV)/bin/pip install torch==2.13.0

train: train-venv
	PYTHONPATH=$(BUILD) $(TRAIN_VENV)/bin/python tests/benchmarks/train_network.py

# The verifier learns from the network's candidates: train it after the network.
train-verifier: train-venv
	PYTHONPATH=$(BUILD) $(TRAIN_VENV)/bin/python tests/benchmarks/train_verifier.py

# make install: copy into the QGIS profile; make install LINK=1: symlink, so
# edits show after "Reload plugin" without installing again.
install:
	mkdir -p "$(QGIS_PLUGINS_DIR)"
	rm -rf "$(QGIS_PLUGINS_DIR)/$(PLUGIN_NAME)"
ifeq ($(LINK),1)
	ln -s "$(CURDIR)" "$(QGIS_PLUGINS_DIR)/$(PLUGIN_NAME)"
else
	mkdir -p "$(QGIS_PLUGINS_DIR)/$(PLUGIN_NAME)"
	cp -r $(PLUGIN_FILES) "$(QGIS_PLUGINS_DIR)/$(PLUGIN_NAME)/"
	find "$(QGIS_PLUGINS_DIR)/$(PLUGIN_NAME)" -name __pycache__ -type d -prune -exec rm -rf {} +
endif
	@echo "Installed in $(QGIS_PLUGINS_DIR)/$(PLUGIN_NAME). Enable 'Railcar Counter' in Plugins > Manage and Install Plugins."

uninstall:
	rm -rf "$(QGIS_PLUGINS_DIR)/$(PLUGIN_NAME)"

zip: $(PLUGIN_NAME).zip

$(PLUGIN_NAME).zip: $(shell git ls-files $(PLUGIN_FILES) 2>/dev/null)
	rm -rf $(BUILD)/zip $@
	mkdir -p $(BUILD)/zip/$(PLUGIN_NAME)
	cp -r $(PLUGIN_FILES) $(BUILD)/zip/$(PLUGIN_NAME)/
	find $(BUILD)/zip -name __pycache__ -type d -prune -exec rm -rf {} +
	find $(BUILD)/zip -name '*.pyc' -delete
	cd $(BUILD)/zip && $(PY) -c "import shutil; shutil.make_archive('../../$(PLUGIN_NAME)', 'zip', '.', '$(PLUGIN_NAME)')"
	rm -rf $(BUILD)/zip
	@echo "Wrote $@"

clean:
	rm -rf $(BUILD) $(VENV) demo_output $(PLUGIN_NAME).zip .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
