"""Nested config dataclasses, their JSON form, and the mapping of CLI flags onto their fields.

A run is described by `RunConfig` (data, train, eval sections plus the model's own dataclass).
Every field becomes a CLI flag of the same name (`max_len` -> `--max-len`); unknown keys in a JSON
file or a flag that names no field are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from echorec.errors import EchorecError


@dataclass
class DataConfig:
    dataset: str = "ml-100k"  # a named dataset (see `echorec data list`) or a path
    format: str = "auto"  # auto | inter | movielens | csv | tsv | parquet | seq | pairs
    user_col: str = "user_id"  # column names for csv/tsv/parquet (RecBole-style `name:type` also ok)
    item_col: str = "item_id"
    time_col: str = "timestamp"
    rating_col: str = "rating"
    min_rating: float | None = None  # keep interactions with rating >= this (None: keep all)
    kcore: int = 0  # iterative user/item k-core filter; 0 = off (RecBole's default)
    max_len: int = 50  # most recent items a model sees
    train_mode: str = "prefix"  # prefix: every prefix is a sample | all: every position predicts | bsarec: BSARec's set (empty prefix too)


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip_grad: float = 5.0  # max global grad norm; 0 = off
    patience: int = 10  # epochs without valid improvement before stopping; 0 = never stop early
    lr_decay: float = 1.0  # multiply the lr by this after `lr_patience` epochs without valid improvement; 1 = constant lr
    lr_patience: int = 2  # epochs without improvement (since the best or the last decay) before the lr decays
    ema: float = 0.0  # per-step decay (e.g. 0.999) of a weight average used to validate, select and save; 0 = off
    # The average's decay at step n is min(ema, (1 + n) / (ema_warmup + n)): until that reaches `ema`
    # (step (ema_warmup - 1) / (1 - ema) - ema_warmup) the average's mean age is about n / ema_warmup steps.
    ema_warmup: float = 10.0
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto | off | bf16 (auto: bf16 where the hardware has fast bf16 matmul)
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    bucket: bool = True  # group samples of similar length into a batch (less padding work)
    progress: bool = True  # tqdm bar per epoch (on a terminal)
    checkpoint_every: int = 0  # also checkpoint every N steps (0: at epoch ends only)
    loss: str = "full"  # full: CE over all items | sampled: CE over the target + `negatives` sampled items
    negatives: int = 1000  # sampled-softmax negatives per step (uniform, shared by the batch)
    label_smoothing: float = 0.0  # full CE only: the target keeps 1 - s of its mass, s is spread over all items
    compile: bool = False  # torch.compile the model (pays off on GPUs; first steps are slow)


@dataclass
class EvalConfig:
    ks: list[int] = field(default_factory=lambda: [5, 10, 20])
    eval_batch_size: int = 1024
    exclude_history: bool = False  # mask items already in the input sequence when ranking
    sampled: int = 0  # 0 = full ranking; N = rank among N sampled negatives (labelled "sampled")
    item_chunk: int = 0  # full ranking over items in slices of this many (bounded memory); 0 = all at once
    valid_metric: str = "ndcg@10"


@dataclass
class RunConfig:
    model: str = "sasrec"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    model_cfg: Any = None  # the model's own Config dataclass instance


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if (origin is typing.Union or origin is types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Turn a JSON value or a CLI string into a value of type `tp`; raise EchorecError if it isn't one."""
    base, optional = _unwrap_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise EchorecError(f"{where}: a value is required")
    try:
        if typing.get_origin(base) in (list, tuple):
            (inner,) = typing.get_args(base)[:1]
            items = value.split(",") if isinstance(value, str) else list(value)
            return [coerce(v.strip() if isinstance(v, str) else v, inner, where) for v in items if v != ""]
        if base is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if base is float:
            return float(value)
        if base is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
    except (TypeError, ValueError):
        raise EchorecError(f"{where}: expected {getattr(base, '__name__', base)}, got {value!r}") from None
    return value


def from_dict(cls, data: dict, where: str = "config"):
    """Build dataclass `cls` from a dict; unknown keys are errors (named), missing keys take defaults."""
    if not isinstance(data, dict):
        raise EchorecError(f"{where}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise EchorecError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, f"{where}.{name}")
        else:
            kwargs[name] = coerce(value, tp, f"{where}.{name}")
    return cls(**kwargs)


def run_config_to_dict(rc: RunConfig) -> dict:
    d = {"model": rc.model, "data": to_dict(rc.data), "train": to_dict(rc.train), "eval": to_dict(rc.eval)}
    d["model_cfg"] = to_dict(rc.model_cfg) if rc.model_cfg is not None else {}
    return d


def run_config_from_dict(d: dict, where: str = "config.json") -> RunConfig:
    from echorec.registry import get_model_class

    known = {"model", "data", "train", "eval", "model_cfg", "meta"}  # meta: facts about the run, not settings
    unknown = sorted(set(d) - known)
    if unknown:
        raise EchorecError(f"{where}: unknown key(s) {', '.join(unknown)}")
    model = d.get("model", "sasrec")
    cls = get_model_class(model)
    return RunConfig(
        model=model,
        data=from_dict(DataConfig, d.get("data", {}), f"{where}: data"),
        train=from_dict(TrainConfig, d.get("train", {}), f"{where}: train"),
        eval=from_dict(EvalConfig, d.get("eval", {}), f"{where}: eval"),
        model_cfg=from_dict(cls.Config, d.get("model_cfg", {}), f"{where}: model_cfg"),
    )


def save_json(path, obj) -> None:
    from echorec.train.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def flag_fields(cls) -> list[tuple[str, str, Any, Any]]:
    """(flag, field name, type, default) for each field of a config dataclass."""
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append(("--" + f.name.replace("_", "-"), f.name, hints[f.name], default))
    return out
