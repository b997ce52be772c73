"""A leaderboard's plan (YAML): the protocol, the datasets and their evaluation settings, the models with their
published recipes and sources, the seeds, the modes side-by-side and the tuning budget; and the settings of one
cell of it, in their order of precedence. (bench/leaderboard.py runs a plan.)"""

from __future__ import annotations

import dataclasses

from echorec.errors import EchorecError

RUN_ONLY = ("train.threads", "train.progress", "train.device")
KEY = "ndcg@10"


# -- the plan ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ModelPlan:
    name: str  # the registered model
    recipe: dict  # section.field -> value, every dataset
    per_dataset: dict  # dataset label -> section.field -> value; such a dataset takes no tuned settings
    sources: dict  # section.field (or "*") -> where the value comes from
    modes: bool  # run the prefix / candidate side-by-side for this (causal) model


@dataclasses.dataclass
class Plan:
    protocol: dict  # section.field -> value, every cell
    datasets: dict  # label -> (path or name, {section.field: value})
    seeds: list
    third_seed: int | None
    third_top: int
    modes_dataset: str | None
    modes_seeds: list
    candidate: dict  # section.field -> value of the candidate mode
    tune_dataset: str | None
    trials: int
    tune_seed: int
    prune_warmup: int
    models: dict  # name -> ModelPlan
    text: str  # the plan file as read


def _mapping(obj, where: str) -> dict:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise EchorecError(f"{where}: expected a mapping, got {type(obj).__name__}")
    return obj


def _settings(obj, where: str) -> dict:
    d = _mapping(obj, where)
    for k in d:
        if not isinstance(k, str) or "." not in k:
            raise EchorecError(f"{where}: setting {k!r}: write it as section.field (train.lr, model_cfg.dropout)")
    return dict(d)


def _seeds(obj, where: str) -> list:
    if not isinstance(obj, list) or not obj or not all(isinstance(s, int) and not isinstance(s, bool) for s in obj):
        raise EchorecError(f"{where}: expected a list of integer seeds")
    return list(obj)


def _int(obj, default: int, where: str) -> int:
    v = default if obj is None else obj
    if not isinstance(v, int) or isinstance(v, bool):
        raise EchorecError(f"{where}: expected an integer, got {v!r}")
    return v


def _read(path: str) -> tuple[dict, str]:
    from echorec.config import MAX_CONFIG_BYTES, load_yaml
    from echorec.fsio import read_bounded

    try:
        d = load_yaml(path, "plan")
        text = read_bounded(path, MAX_CONFIG_BYTES, "plan").decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise EchorecError(f"{path}: not UTF-8 text (byte {e.start + 1})") from None
    d = _mapping(d, path)
    unknown = sorted(map(str, set(d) - {"protocol", "datasets", "seeds", "third_seed", "modes", "tuning", "models"}))
    if unknown:
        raise EchorecError(f"{path}: unknown section(s) {', '.join(unknown)}")
    return d, text


def _datasets(d: dict, path: str) -> dict:
    datasets = {}
    for label, spec in _mapping(d.get("datasets"), f"{path}: datasets").items():
        spec = _mapping(spec, f"{path}: datasets.{label}")
        if "path" not in spec:
            raise EchorecError(f"{path}: datasets.{label}: needs a path (a file or a named dataset)")
        datasets[str(label)] = (str(spec["path"]), _settings(spec.get("settings"), f"{path}: datasets.{label}"))
    if not datasets:
        raise EchorecError(f"{path}: datasets: name at least one")
    return datasets


def _models(d: dict, path: str, datasets: dict) -> dict:
    from echorec.models import get_model_class

    models = {}
    for name, spec in _mapping(d.get("models"), f"{path}: models").items():
        where = f"{path}: models.{name}"
        spec = _mapping(spec, where)
        get_model_class(str(name))
        per = {str(k): _settings(v, f"{where}.per_dataset.{k}")
               for k, v in _mapping(spec.get("per_dataset"), f"{where}.per_dataset").items()}
        for k in per:
            if k not in datasets:
                raise EchorecError(f"{where}.per_dataset: {k!r} is not a dataset of the plan")
        sources = {str(k): str(v) for k, v in _mapping(spec.get("sources"), f"{where}.sources").items()}
        models[str(name)] = ModelPlan(str(name), _settings(spec.get("recipe"), f"{where}.recipe"), per, sources,
                                      bool(spec.get("modes", False)))
    if not models:
        raise EchorecError(f"{path}: models: name at least one")
    return models


def load_plan(path: str) -> Plan:
    """Read and check a plan file: every model, dataset and setting must exist before anything runs."""
    d, text = _read(path)
    datasets = _datasets(d, path)
    third, modes = _mapping(d.get("third_seed"), f"{path}: third_seed"), _mapping(d.get("modes"), f"{path}: modes")
    tuning = _mapping(d.get("tuning"), f"{path}: tuning")
    plan = Plan(protocol=_settings(d.get("protocol"), f"{path}: protocol"), datasets=datasets,
                seeds=_seeds(d.get("seeds", [42, 43]), f"{path}: seeds"),
                third_seed=None if third.get("seed") is None else _int(third["seed"], 0, f"{path}: third_seed.seed"),
                third_top=_int(third.get("top"), 0, f"{path}: third_seed.top"),
                modes_dataset=modes.get("dataset"), modes_seeds=_seeds(modes.get("seeds", [42, 43]), f"{path}: modes"),
                candidate=_settings(modes.get("candidate"), f"{path}: modes.candidate"),
                tune_dataset=tuning.get("dataset"), trials=_int(tuning.get("trials"), 0, f"{path}: tuning.trials"),
                tune_seed=_int(tuning.get("seed"), 42, f"{path}: tuning.seed"),
                prune_warmup=_int(tuning.get("prune_warmup"), 10, f"{path}: tuning.prune_warmup"),
                models=_models(d, path, datasets), text=text)
    for what, label in (("modes", plan.modes_dataset), ("tuning", plan.tune_dataset)):
        if label is not None and label not in datasets:
            raise EchorecError(f"{path}: {what}.dataset {label!r} is not a dataset of the plan")
    if any(m.modes for m in plan.models.values()) and (plan.modes_dataset is None or not plan.candidate):
        raise EchorecError(f"{path}: a model asks for the modes side-by-side: give modes.dataset and modes.candidate")
    for m in plan.models.values():  # every setting resolves to a valid config (raises EchorecError otherwise)
        for label in datasets:
            cell_config(plan, label, m.name, plan.seeds[0], tuned={}, mode="candidate" if m.modes else "prefix")
    return plan


# -- one cell's settings -------------------------------------------------------------------------------------

def cell_settings(plan: Plan, label: str, model: str, tuned: dict | None, mode: str) -> dict:
    """section.field -> value for one cell, in order of precedence (later wins): the protocol, the dataset's
    settings, the model's recipe, the recipe's settings for this dataset or else the tuned settings, the mode."""
    from echorec.bench.accuracy import protocol

    mp = plan.models[model]
    path, ds_settings = plan.datasets[label]
    out = dict(protocol({**plan.protocol, **ds_settings}))
    out.update(mp.recipe)
    if label in mp.per_dataset:
        out.update(mp.per_dataset[label])
    else:
        out.update(tuned or {})
    if mode == "candidate":
        out.update(plan.candidate)
    out["data.dataset"] = path
    return out


def cell_config(plan: Plan, label: str, model: str, seed: int, tuned: dict | None, mode: str, threads: int = 0):
    from echorec.config import run_config_from_dict, with_overrides

    s = cell_settings(plan, label, model, tuned, mode)
    s.update({"train.seed": seed, "train.threads": threads, "train.progress": False})
    rc = run_config_from_dict(with_overrides({"model": model}, s), where=f"plan: {model} on {label}")
    rc.validate()
    return rc


def identity(config: dict) -> dict:
    """A config dict without the keys that say how a cell ran (threads, progress bar, device)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items() if k != "meta"}
    for key in RUN_ONLY:
        sec, name = key.split(".")
        out.get(sec, {}).pop(name, None)
    return out


# -- records -------------------------------------------------------------------------------------------------
