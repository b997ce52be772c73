# Shortcuts for the README's commands.
.PHONY: install test demo
install:
	pip install -e ".[dev]"
test:
	pip install -e ".[dev]" && pytest
demo:
	pip install -e . && echorec train --model echomamba4rec --dataset ml-100k --out runs/demo --epochs 3 --overwrite
