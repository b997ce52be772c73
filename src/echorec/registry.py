"""The model table: `@register("name")` on a model class adds it.

This module only holds the table. `echorec.models` imports every built-in model (which registers
it) and is where callers look models up (`get_model_class`, `build_model`, `model_names`), so a
lookup always sees the built-ins. Each model class carries its config dataclass as `Config`, so the
CLI can list a model's fields and a run folder can rebuild the model from `config.json` alone.
"""

from __future__ import annotations

_MODELS: dict[str, type] = {}


def register(name: str):
    def deco(cls):
        if name in _MODELS:
            raise RuntimeError(f"model {name!r} registered twice")
        cls.name = name
        _MODELS[name] = cls
        return cls

    return deco


def registered() -> dict[str, type]:
    """name -> class of every model registered so far."""
    return dict(_MODELS)
