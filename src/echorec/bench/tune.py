"""`echorec tune`: the same fixed-budget search for every model and dataset of a study.

Each (model, dataset) gets `trials` Optuna TPE trials (seeded, so a re-run proposes the same points)
over one search space built from the config, identical in kind for every model: the learning
rate, the weight decay, and every dropout field of the model's config. A trial trains under the
study's protocol and is scored by its best value of the study's valid metric (NDCG@10 by default);
test metrics are never looked at.

Results: OUT/tuned/<dataset>/<model>.json with every trial and the best settings (as
`section.field` keys), written after each trial, so an interrupted search resumes with the
trials it has (they are replayed into Optuna) and a finished one is skipped. `bench accuracy
--out OUT` reads the best settings.

Optuna is an optional extra: `pip install 'echorec[tune]'`.
"""

from __future__ import annotations

import dataclasses
import os
import time

from echorec.errors import EchorecError
from echorec.fsio import read_json, write_json


def search_space(model: str) -> dict:
    """name -> (kind, low, high | choices); kinds: logfloat, float (step 0.1), choice."""
    from echorec.models import get_model_class

    space = {"train.lr": ("logfloat", 1e-4, 1e-2), "train.weight_decay": ("choice", [0.0, 1e-5, 1e-4, 1e-3])}
    for f in dataclasses.fields(get_model_class(model).Config):
        if "dropout" in f.name and isinstance(f.default, float):
            space[f"model_cfg.{f.name}"] = ("float", 0.0, 0.5)
    return space


def _suggest(trial, name: str, spec):
    kind = spec[0]
    if kind == "logfloat":
        return trial.suggest_float(name, spec[1], spec[2], log=True)
    if kind == "float":
        return trial.suggest_float(name, spec[1], spec[2], step=0.1)
    return trial.suggest_categorical(name, spec[1])


def _distribution(spec):
    import optuna

    kind = spec[0]
    if kind == "logfloat":
        return optuna.distributions.FloatDistribution(spec[1], spec[2], log=True)
    if kind == "float":
        return optuna.distributions.FloatDistribution(spec[1], spec[2], step=0.1)
    return optuna.distributions.CategoricalDistribution(spec[1])


def tune_one(study_dir: str, model: str, dataset: str, trials: int, proto, threads: int = 0, log=print) -> dict:
    try:
        import optuna
    except ImportError:
        raise EchorecError("tuning needs optuna: pip install 'echorec[tune]'") from None
    from echorec.bench.accuracy import cell_config, dataset_label, parse_model_spec
    from echorec.data.split import load_split
    from echorec.training.loop import train_model

    label = dataset_label(dataset)
    path = os.path.join(study_dir, "tuned", label, f"{model}.json")
    saved = read_json(path) if os.path.exists(path) else {"trials": []}
    if len(saved["trials"]) >= trials:
        log(f"tune {label} {model}: {len(saved['trials'])} trials already, skipped")
        return saved
    space = search_space(parse_model_spec(model)[0])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    for t in saved["trials"]:  # replay finished trials so the sampler continues where it stopped
        study.add_trial(optuna.trial.create_trial(params=t["params"], value=t["value"],
                                                  distributions={k: _distribution(space[k]) for k in t["params"]}))
    rc0 = cell_config(model, dataset, 0, proto, None, threads)
    _, split = load_split(rc0.data)  # one load for all trials
    while len(saved["trials"]) < trials:
        trial = study.ask()
        params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
        rc = cell_config(model, dataset, 42, proto, params, threads)
        t0 = time.perf_counter()
        res = train_model(rc, split, None, quiet=True)
        value = float(res.valid[rc.eval.metric_key])
        study.tell(trial, value)
        saved["trials"].append({"params": params, "value": value, "best_epoch": res.best_epoch,
                                "seconds": round(time.perf_counter() - t0, 1)})
        best = max(saved["trials"], key=lambda t: t["value"])
        saved.update({"best": best["params"], "best_valid_ndcg@10": best["value"], "budget": trials,
                      "space": {k: list(v) for k, v in space.items()}})
        write_json(path, saved)
        log(f"tune {label} {model}: trial {len(saved['trials'])}/{trials} valid NDCG@10 {value:.4f} "
            f"(best {best['value']:.4f})")
    return saved


def tune_study(study_dir: str, models: list[str], datasets: list[str], trials: int, overrides: dict | None = None,
               threads: int = 0, log=lambda m: print(m, flush=True)) -> None:
    from echorec.bench.accuracy import _check_protocol, protocol, validate

    proto = protocol(overrides)
    validate(models, datasets, proto)
    _check_protocol(study_dir, proto)
    for ds in datasets:
        for m in models:
            tune_one(study_dir, m, ds, trials, proto, threads, log)
