"""Evaluation: ranking metrics (pure tensor functions) and batched full-ranking evaluation."""
