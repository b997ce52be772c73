"""Registered models: importing this package registers every built-in one; look models up here.

Models from other packages join through the `echorec.models` entry-point group: a package that declares

    [project.entry-points."echorec.models"]
    mymodel = "mypackage.models:MyModel"

is loaded the first time anything looks a model up, so once it is pip-installed its models appear in
`echorec models` and work everywhere a built-in does. The entry point may name the class (registered
under the entry point's name unless it is registered already) or a module whose import registers its
models with `@echorec.register`.
"""

from __future__ import annotations

import sys
from typing import Any

from echorec.errors import EchorecError
from echorec.fields import from_dict, validate
from echorec.models import bert4rec, bsarec, echomamba4rec, fmlprec, gru4rec, mamba4rec, narm, sasrec  # noqa: F401
from echorec.registry import register, registered

__all__ = ["build_model", "get_model_class", "load_plugins", "model_names", "register"]

ENTRY_POINT_GROUP = "echorec.models"
_plugins_loaded = False


def load_plugins(force: bool = False) -> list[str]:
    """Import the models of installed packages (the `echorec.models` entry points), once per process; returns
    the entry points loaded. A plugin that fails to import is a warning naming it, never the end of a run that
    does not use it."""
    global _plugins_loaded
    if _plugins_loaded and not force:
        return []
    _plugins_loaded = True
    from importlib.metadata import entry_points

    from echorec.models.base import SequentialRecommender

    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except (Exception, SystemExit) as e:  # a broken plugin (even one that exits) must not take the rest down
            print(f"warning: model plugin {ep.name!r} ({ep.value}) failed to load: {type(e).__name__}: "
                  f"{str(e)[:200]}", file=sys.stderr)
            continue
        if isinstance(obj, type) and issubclass(obj, SequentialRecommender) and obj not in registered().values():
            if ep.name in registered():
                print(f"warning: model plugin {ep.name!r} ({ep.value}) clashes with a registered model; skipped",
                      file=sys.stderr)
                continue
            register(ep.name)(obj)
        loaded.append(ep.name)
    return loaded


def model_names() -> list[str]:
    load_plugins()
    return sorted(registered())


def get_model_class(name: str) -> type:
    load_plugins()
    models = registered()
    if not isinstance(name, str):
        raise EchorecError(f"model must be a model's name, got {type(name).__name__}; known: {', '.join(sorted(models))}")
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
