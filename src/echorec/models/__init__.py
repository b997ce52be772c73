"""Registered models: importing this package registers every built-in one; look models up here."""

from __future__ import annotations

from typing import Any

from echorec.errors import EchorecError
from echorec.fields import from_dict, validate
from echorec.models import bert4rec, bsarec, echomamba4rec, fmlprec, gru4rec, mamba4rec, narm, sasrec  # noqa: F401
from echorec.registry import register, registered

__all__ = ["build_model", "get_model_class", "model_names", "register"]


def model_names() -> list[str]:
    return sorted(registered())


def get_model_class(name: str) -> type:
    models = registered()
    try:
        return models[name]
    except KeyError:
        raise EchorecError(f"unknown model {name!r}; known: {', '.join(sorted(models))}") from None


def build_model(name: str, n_items: int, cfg: Any = None, max_len: int = 50):
    """The model `name` over `n_items` items; `cfg` is its Config (or a dict of its fields, or None: defaults)."""
    cls = get_model_class(name)
    if cfg is None:
        cfg = cls.Config()
    elif isinstance(cfg, dict):
        cfg = from_dict(cls.Config, cfg, where=f"model {name}")
    validate(cfg)
    return cls(n_items=n_items, max_len=max_len, cfg=cfg)
