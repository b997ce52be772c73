"""Model registry: `@register("name")` on a model class, `build_model(name, n_items, cfg)`.

Each model class carries its config dataclass as `Config`, so the CLI can list a model's fields and
a run folder can rebuild the model from `config.json` alone.
"""

from __future__ import annotations

from typing import Any

from echorec.errors import EchorecError

_MODELS: dict[str, type] = {}


def register(name: str):
    def deco(cls):
        if name in _MODELS:
            raise RuntimeError(f"model {name!r} registered twice")
        cls.name = name
        _MODELS[name] = cls
        return cls

    return deco


def _load_builtin() -> None:
    # Importing the package registers every built-in model (each file calls @register).
    import echorec.models  # noqa: F401


def model_names() -> list[str]:
    _load_builtin()
    return sorted(_MODELS)


def get_model_class(name: str) -> type:
    _load_builtin()
    try:
        return _MODELS[name]
    except KeyError:
        raise EchorecError(f"unknown model {name!r}; known: {', '.join(sorted(_MODELS))}") from None


def build_model(name: str, n_items: int, cfg: Any = None, max_len: int = 50):
    cls = get_model_class(name)
    if cfg is None:
        cfg = cls.Config()
    elif isinstance(cfg, dict):
        from echorec.config import from_dict

        cfg = from_dict(cls.Config, cfg, where=f"model {name}")
    return cls(n_items=n_items, max_len=max_len, cfg=cfg)
