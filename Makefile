# Two commands on a fresh machine:
#   make demo   install, then run the built-in default job
#   make test   install (with test extras), then run the test suite
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0

.PHONY: install install-dev demo test

# Install torch first (the local CPU build) unless one is already installed, then the
# project pinned to that torch so pip never swaps it for a CUDA build.
install:
	$(PYTHON) -m pip --version >/dev/null
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==$(TORCH_VERSION)"
	$(PYTHON) -c "import torch; print('torch==' + torch.__version__)" > .torch-constraint.txt
	$(PYTHON) -m pip install -q -c .torch-constraint.txt -e .

install-dev: install
	$(PYTHON) -m pip install -q -c .torch-constraint.txt -e ".[dev]"

demo: install
	$(PYTHON) -m torchtune._demo

test: install-dev
	$(PYTHON) -m pytest tests -q -x --timeout=900
