# Two commands set everything up: `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU wheels of these versions lie on the development machines' disk; pinned for reproducibility.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: demo test bench clean-venv

# The venv takes about 6 GB (PyPI's torch wheel for x86_64 brings CUDA libraries); say so up front
# rather than let pip stop halfway with "No space left on device".
NEED_KB := 6000000

$(STAMP): pyproject.toml
	@avail=$$(df -Pk . | awk 'NR==2 {print $$4}'); if [ "$$avail" -lt $(NEED_KB) ]; then \
		echo "make: .venv needs about 6 GB of free disk, $$((avail / 1024)) MB free here" >&2; exit 1; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet -e '.[test,bench]' $(TORCH_PINS)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/objdet demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
