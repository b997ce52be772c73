"""Training: the loop (train/loop.py) and atomic run-folder files (train/checkpoint.py)."""
