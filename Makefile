# The two README commands. Each creates .venv (Python 3.10+ on PATH as python3) and installs
# what it needs; torch is pinned so pip never resolves a multi-gigabyte unpinned build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH := torch==2.14.1 torchvision==0.29.1
OUT ?= loupe-demo

.PHONY: demo test venv venv-dev browser bench clean

$(VENV)/.base: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -c constraints.txt -e '.[demo,hf,tensorboard,onnx]'
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	# visdom 0.2.4 is a source package whose setup needs pkg_resources (setuptools<81).
	$(PIP) install -q -c constraints.txt 'setuptools<81'
	$(PIP) install -q -c constraints.txt --no-build-isolation 'visdom==0.2.4'
	$(PIP) install -q -c constraints.txt quantus
	touch $@

venv: $(VENV)/.base
venv-dev: $(VENV)/.dev

# Headless Chromium + chromedriver for the browser tests (Debian packages).
browser:
	@command -v chromedriver >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; }

demo: venv
	$(VENV)/bin/loupe demo --out $(OUT)

test: venv-dev browser
	$(PY) -m pytest -q -p no:cacheprovider

bench: venv-dev
	for f in bench/*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
