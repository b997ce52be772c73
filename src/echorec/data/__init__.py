"""Data: readers for interaction logs, named datasets, preprocessing, splits and batching."""
