"""Serving: turn a run folder into recommendations (library, CLI, HTTP)."""

from echorec.serve.recommender import Recommender

__all__ = ["Recommender"]
