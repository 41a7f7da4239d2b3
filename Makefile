# Two commands for a new user: `make train` runs the main job, `make test` runs the tests.
# Both create .venv/ in the repository root when it is missing.
PY := .venv/bin/python
DATA ?= ../shared/data/cifar10-jpeg
OUT ?= runs/cifar_resnet20
ARGS ?=

.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[dev]'
	touch $@

venv: .venv/.installed

# Trains CIFAR ResNet-20 with the paper's recipe (64k iterations); ARGS="--iters 2000" shortens it.
train: venv
	$(PY) -m resnetlab train --model cifar_resnet20 --recipe cifar-paper --data $(DATA) --out $(OUT) $(ARGS)
	@echo "Paper-scale CIFAR-10 results made on a CPU (README, Results): results/cifar10-16k/report.md (Table 6, Fig. 6 at 16k iterations) and results/cifar10-64k/report.md (ResNet-20, the full recipe on 45k images: 13.20% hold-out error, --weights resnetlab-45k) and results/cifar10-50k/report.md (the paper's final protocol on all 50k: --weights resnetlab)"

test: venv
	$(PY) -m pytest -q $(ARGS)

bench: venv
	$(PY) -m resnetlab bench $(ARGS)

.PHONY: venv train test bench
