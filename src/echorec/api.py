"""The Python API: train a model, load a run folder, recommend and evaluate, in a few calls.

    import echorec

    run = echorec.train(model="sasrec", dataset="ml-100k", epochs=3, out="runs/demo")
    run.metrics["test"]["ndcg@10"]
    run.recommend(["242", "302"], k=10)           # raw ids in, raw ids out
    run = echorec.load_run("runs/demo")           # any run folder, from the CLI or from here
    run.evaluate()                                # recomputed from the weights and the data

Settings are the CLI's: every flag is a keyword (`max_len=50` for `--max-len 50`), a config file
(`config="run.yaml"`, the same file `echorec train --config` takes) or a `RunConfig`; keywords win
over the file. Mistakes raise `EchorecError` with the CLI's one-line messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from echorec.config import (
    SECTION_NAMES,
    SECTIONS,
    RunConfig,
    load_config_file,
    run_config_from_dict,
    run_config_to_dict,
    with_overrides,
)
from echorec.errors import EchorecError
from echorec.runfolder import RunFolder


def _dotted(model: str, kwargs: dict) -> dict:
    """Flat keywords (the flags' names with underscores) -> `section.field` keys."""
    import dataclasses

    from echorec.models import get_model_class

    where = {}
    for sec, cls in [*SECTIONS, ("model_cfg", get_model_class(model).Config)]:
        for f in dataclasses.fields(cls):
            where.setdefault(f.name, f"{sec}.{f.name}")
    out = {}
    for k, v in kwargs.items():
        if k not in where:
            import difflib

            close = difflib.get_close_matches(k, list(where), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise EchorecError(f"unknown setting {k!r} for {model}{hint}")
        out[where[k]] = v
    return out


def starting_config(config: str | None = None, resume: str | None = None, init_from: str | None = None) -> dict:
    """The settings a run starts from before flags or keywords: a resumed run's config.json, else a config file,
    else (a warm start) the parent run's settings, else the defaults ({})."""
    from echorec.config import load_config_file

    if resume:
        d = RunFolder(resume).read_config_dict()
    elif config:
        d = load_config_file(config)
    elif init_from:
        if not os.path.isdir(init_from):
            raise EchorecError(f"--init-from {init_from}: no such run folder")
        d = RunFolder(init_from).read_config_dict()
    else:
        return {}
    if not isinstance(d, dict):
        raise EchorecError(f"config: expected a mapping of sections, got {type(d).__name__}")
    d = dict(d)
    d.pop("meta", None)
    if "model" in d and not isinstance(d["model"], str):
        raise EchorecError(f"config: model must be a model's name, got {type(d['model']).__name__}")
    return d


def make_config(config: RunConfig | dict | str | None = None, *, overrides: dict | None = None,
                **settings) -> RunConfig:
    """A validated RunConfig from a RunConfig, a config dict (config.json's form), a .yaml/.json file, or
    nothing (the defaults), with `settings` (flat field names, plus `model`) on top, then `overrides`
    (`section.field` keys: the form the CLI's flags and studies use)."""
    if isinstance(config, RunConfig):
        base = run_config_to_dict(config)
    elif isinstance(config, str):
        base = load_config_file(config)
    elif isinstance(config, dict):
        base = dict(config)
    elif config is None:
        base = {}
    else:
        raise EchorecError(f"config must be a RunConfig, a dict or a file path, got {type(config).__name__}")
    init_from = settings.get("init_from") or (overrides or {}).get("train.init_from")
    if config is None and init_from:  # a warm start with nothing else given starts from its parent's settings
        base = starting_config(init_from=init_from)
    base.pop("meta", None)
    model = settings.pop("model", None) or base.get("model", "sasrec")
    if not isinstance(model, str):
        raise EchorecError(f"config: model must be a name, got {model!r}")
    for sec in SECTION_NAMES:
        if not isinstance(base.get(sec) or {}, dict):
            raise EchorecError(f"config: {sec} must be a mapping of settings, got {type(base[sec]).__name__}")
    d = {"model": model, **{k: dict(base.get(k) or {}) for k in SECTION_NAMES}}
    if base.get("model", model) != model:  # the file's data/train/eval settings for another model: not its own
        d["model_cfg"] = {}
    d = with_overrides(with_overrides(d, _dotted(model, settings)), overrides or {})
    rc = run_config_from_dict(d, where="settings")
    rc.validate()
    return rc


def resume_config(out: str | os.PathLike, config: RunConfig | dict | str | None = None, *,
                  overrides: dict | None = None, **settings) -> RunConfig:
    """The config a resumed run in `out` trains with: its config.json (or `config`), with `settings` and
    `overrides` on top; refused when they change what the run computes (only how long and how it runs)."""
    from echorec.training.resume import check_resume_config

    folder = RunFolder(os.fspath(out))
    rc = make_config(folder.read_config_dict() if config is None else config, overrides=overrides, **settings)
    check_resume_config(folder, rc)
    return rc


@dataclass
class Run:
    """A run folder: its config, metrics and history, and the trained model behind `recommend`/`evaluate`."""

    path: str
    config: RunConfig
    meta: dict = field(repr=False)
    _rec: Any = field(default=None, repr=False)

    @property
    def metrics(self) -> dict | None:
        """metrics.json (valid/test metrics, best epoch, timings), or None while the run is unfinished."""
        return RunFolder(self.path).read_metrics()

    @property
    def history(self) -> list[dict]:
        """One row per epoch (loss, lr, seconds, valid metrics), as in history.csv."""
        return RunFolder(self.path).read_history()

    def recommender(self, device: str = "cpu"):
        """The serving object (echorec.serve.Recommender) over this run, built once."""
        if self._rec is None:
            from echorec.serve.recommender import Recommender

            self._rec = Recommender.from_run(self.path, device)
        return self._rec

    def recommend(self, history: list, k: int = 10, exclude_seen: bool = True, allow: list | None = None,
                  deny: list | None = None) -> dict:
        """Top-k next items for one history of raw item ids (oldest first): {"items": [{"item", "score"}, ...],
        "dropped": unknown ids, "fallback": popularity answer?, "used": items read}. `allow` / `deny`: raw ids
        that alone may be, or may never be, recommended (applied inside the top-k)."""
        return self.recommender().recommend(history, k, exclude_seen, allow, deny)

    def recommend_batch(self, histories: list[list], k: int = 10, exclude_seen: bool = True, allow: list | None = None,
                        deny: list | None = None) -> list[dict]:
        return self.recommender().recommend_batch(histories, k, exclude_seen, allow, deny)

    def session(self):
        """A streaming session: `s.add(item)`, then `s.recommend(k)`."""
        return self.recommender().session()

    def evaluate(self, split: str = "test", device: str | None = None, allow_data_change: bool = False) -> dict:
        """Recompute the `split` metrics from the saved weights and the run's data file."""
        from echorec.eval.evaluate import evaluate_run

        if split not in ("valid", "test"):
            raise EchorecError(f"split must be 'valid' or 'test', got {split!r}")
        return evaluate_run(self.path, split, device, allow_data_change)[0]


def load_run(path: str | os.PathLike) -> Run:
    """The run folder at `path` (checked as `echorec evaluate` checks it)."""
    path = os.fspath(path)
    rc, meta = RunFolder(path).read_config()
    return Run(path, rc, meta)


def train(config: RunConfig | dict | str | None = None, *, out: str | os.PathLike | None = None,
          overwrite: bool = False, resume: bool = False, quiet: bool = False, allow_data_change: bool = False,
          overrides: dict | None = None, **settings) -> Run:
    """Train as `echorec train` does and return the Run. `config`: a RunConfig, a dict, a .yaml/.json file or
    None; `settings`: flat field names (`model`, `dataset`, `epochs`, `hidden`, ...) over it. `out` is the run
    folder (required); `resume=True` continues the run in it (`allow_data_change`: even on changed data)."""
    from echorec.training.loop import run_training

    if out is None:
        raise EchorecError("train() needs out=: the run folder to write")
    out = os.fspath(out)
    if resume:
        rc = resume_config(out, config, overrides=overrides, **settings)
    else:
        rc = make_config(config, overrides=overrides, **settings)
    run_training(rc, out, quiet=quiet, resume=resume, overwrite=overwrite, allow_data_change=allow_data_change)
    if int(os.environ.get("RANK", "0")) != 0:
        return Run(out, rc, {})  # under torchrun only rank 0 writes the folder
    return load_run(out)


def evaluate(run: str | os.PathLike, split: str = "test", device: str | None = None,
             allow_data_change: bool = False) -> dict:
    """`echorec evaluate`: the `split` metrics recomputed from a run folder's weights and its data."""
    return load_run(run).evaluate(split, device, allow_data_change)


def recommend(run: str | os.PathLike, history: list, k: int = 10, exclude_seen: bool = True,
              device: str = "cpu", allow: list | None = None, deny: list | None = None) -> dict:
    """`echorec recommend`: the top-k next items for one history of raw item ids."""
    return load_run(run).recommender(device).recommend(history, k, exclude_seen, allow, deny)


def predict(run: str | os.PathLike, out: str | os.PathLike, data: str | None = None, users: str | None = None,
            k: int = 10, exclude_seen: bool = True, allow: list | None = None, deny: list | None = None,
            fmt: str | None = None, device: str = "cpu", overwrite: bool = False, progress: bool = False,
            columns: dict | None = None, budget_mb: float = 256.0) -> dict:
    """`echorec predict`: the top-k of every user of `data` (default: the run's own log), or of the users listed in
    the file `users`, written to `out` (CSV, or Parquet for a .parquet name) as rows of raw ids: user, rank, item,
    score. Returns the job's figures."""
    from echorec.serve.predict import predict as run_predict

    return run_predict(os.fspath(run), os.fspath(out), data, users, k, exclude_seen, allow, deny, fmt, device,
                       budget_mb, overwrite, progress, columns, log=lambda m: None)


def export(run: str | os.PathLike, out: str | os.PathLike, k: int = 10, device: str = "cpu", fmt: str | None = None,
           overwrite: bool = False) -> str:
    """`echorec export`: the run's model and a top-k as TorchScript or ONNX (`fmt`, or from a .onnx name) at `out`;
    returns the path. ONNX writes the id map beside the model (<name>.items.tsv)."""
    from echorec.serve.export import check_out, export_format, export_onnx, export_torchscript

    out = os.fspath(out)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise EchorecError(f"-k {k!r}: at least 1 item")
    check_out(out, overwrite)
    if export_format(out, fmt) == "onnx":
        if str(device) not in ("cpu", "auto"):
            raise EchorecError("--format onnx exports a CPU graph; drop --device (ONNX Runtime picks its own)")
        return export_onnx(os.fspath(run), out, k)
    return export_torchscript(os.fspath(run), out, k, device)
