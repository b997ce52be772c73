"""The settings of a run: nested config dataclasses, their JSON form and their one validation pass.

A run is described by `RunConfig` (data, train, eval sections plus the model's own Config). Every
field becomes a CLI flag of the same name (`max_len` -> `--max-len`) whose help is the field's own
doc; unknown keys in a JSON file or a flag that names no field are errors, so a typo never silently
falls back to a default. `RunConfig.validate()` checks every choice and range, and the rules that
tie the model to the training settings, before anything is read or written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from echorec.data.readers import FORMATS
from echorec.errors import EchorecError
from echorec.fields import from_dict, setting, to_dict, validate

TRAIN_MODES = ("prefix", "all", "bsarec", "sample")
LOGGERS = ("none", "tensorboard", "mlflow")


@dataclass
class DataConfig:
    dataset: str = setting("ml-100k", "a named dataset (see `echorec data list`) or a path to a log file")
    format: str = setting("auto", "the file's format (auto: from its name and first lines)", choices=FORMATS)
    user_col: str = setting("user_id", "user column of a csv/tsv/parquet file (RecBole-style name:type too)")
    item_col: str = setting("item_id", "item column of a csv/tsv/parquet file")
    time_col: str = setting("timestamp", "time column of a csv/tsv/parquet file (absent: file order)")
    rating_col: str = setting("rating", "rating column, read only with --min-rating")
    min_rating: float | None = setting(None, "keep interactions rated at least this (none: keep all)")
    kcore: int = setting(0, "iterative user/item k-core filter; 0 = off (RecBole's default)", low=0)
    dedup: bool = setting(False, "drop rows that repeat an earlier (user, item, timestamp) row (`data info` counts "
                          "them); files without timestamps have none, a repeated item there is a new event")
    split: str = setting("loo", "loo: leave-one-out (each user's last item tests, the one before validates) | "
                         "time: a global temporal split at --valid-from / --test-from", choices=("loo", "time"))
    valid_from: str | None = setting(None, "--split time: events from this time on are valid targets (a fraction "
                                     "of the time range like 0.8, epoch seconds, or an ISO-8601 date)")
    test_from: str | None = setting(None, "--split time: events from this time on are test targets (same forms)")
    max_len: int = setting(50, "most recent items a model sees", low=1)
    train_mode: str = setting("prefix", "training samples: prefix (every prefix predicts its next item), "
                              "all (every position predicts; causal models), bsarec (BSARec's set, empty prefix "
                              "too), sample (--prefixes-per-user prefixes of each user, redrawn every epoch)",
                              choices=TRAIN_MODES)
    prefixes_per_user: int = setting(4, "--train-mode sample: prefixes drawn per user and epoch (uniformly over "
                                     "the user's positions; all of them for a shorter history)", low=1)
    prefix_draw: str = setting("user", "--train-mode sample: user (K prefixes of every user: users alike) | "
                               "uniform (K x users prefixes uniform over all training positions: users weighted "
                               "by history length, as every-prefix training weighs them)", choices=("user", "uniform"))

    def check(self) -> None:
        if self.split == "time" and (self.valid_from is None or self.test_from is None):
            raise EchorecError("--split time needs --valid-from and --test-from (e.g. 0.8 and 0.9 of the time range)")
        if self.split == "loo" and (self.valid_from is not None or self.test_from is not None):
            raise EchorecError("--valid-from / --test-from go with --split time")


@dataclass
class TrainConfig:
    epochs: int = setting(200, "most epochs to train (a resumed run counts all of them)", low=1)
    batch_size: int = setting(256, "samples per step", low=1)
    lr: float = setting(1e-3, "Adam's learning rate", low=0, low_open=True)
    weight_decay: float = setting(0.0, "Adam's (coupled L2) weight decay", low=0)
    clip_grad: float = setting(5.0, "largest global gradient norm; 0 = no clipping", low=0)
    patience: int = setting(10, "epochs without a valid gain before stopping; 0 = never stop early", low=0)
    lr_decay: float = setting(1.0, "multiply the lr by this after --lr-patience epochs without a valid gain; "
                              "1 = constant lr", low=0, high=1, low_open=True)
    lr_patience: int = setting(2, "epochs without a gain (since the best or the last decay) before the lr decays",
                               low=1)
    ema: float = setting(0.0, "per-step decay (e.g. 0.999) of a weight average used to validate, select and "
                         "save; 0 = off", low=0, high=1, high_open=True)
    # The average's decay at step n is min(ema, (1 + n) / (ema_warmup + n)): until that reaches `ema`
    # (step (ema_warmup - 1) / (1 - ema) - ema_warmup) the average's mean age is about n / ema_warmup steps.
    ema_warmup: float = setting(10.0, "warm-up of the weight average: its decay at step n is "
                                "min(ema, (1 + n) / (ema_warmup + n)); 10 is TensorFlow's rule, 2 a plain mean",
                                low=1, low_open=True)
    seed: int = setting(42, "seed of the weights, the batch order and dropout", low=0, high=2**32 - 1)
    device: str = setting("auto", "auto | cpu | cuda | cuda:N (auto: this process's GPU if any, else the CPU)")
    amp: str = setting("auto", "bf16 autocast (auto: where the hardware multiplies bf16 fast)",
                       choices=("auto", "off", "bf16"))
    threads: int = setting(0, "torch intra-op threads; 0 = torch's default", low=0)
    bucket: bool = setting(True, "group samples of similar length into a batch (less padding work)")
    pad_multiple: int = setting(0, "round batch widths up to a multiple of this (few shapes for GPU kernels and "
                                "--compile); 0 = auto: 8 on CUDA, exact widths elsewhere", low=0)
    progress: bool = setting(True, "a progress bar per epoch (on a terminal only)")
    logger: str = setting("none", "also send per-epoch losses, metrics, lr and times, and the config, to tensorboard "
                          "(RUN/tensorboard) or mlflow ($MLFLOW_TRACKING_URI, else RUN/mlflow.db); train.log is "
                          "always written", choices=LOGGERS)
    checkpoint_every: int = setting(0, "also checkpoint every N steps (0: at epoch ends and by time only)", low=0)
    checkpoint_minutes: float = setting(10.0, "also checkpoint after this many minutes of training since the last "
                                        "checkpoint, mid-epoch too, so a kill loses at most that much; 0 = off", low=0)
    loss: str = setting("full", "full: CE over all items | sampled: CE over the target and --negatives items",
                        choices=("full", "sampled"))
    negatives: int = setting(1000, "sampled-softmax negatives per step (uniform, shared by the batch)", low=1)
    sparse_items: bool = setting(False, "with --loss sampled: row-sparse gradients for the item table and a lazy Adam "
                                 "that updates only the rows a step touches, so a step's cost does not grow with the "
                                 "catalogue (untouched rows' Adam moments do not decay: results differ from dense "
                                 "Adam)")
    label_smoothing: float = setting(0.0, "full CE only: the target keeps 1 - s of its mass, s is spread over all "
                                     "items", low=0, high=1, high_open=True)
    init_from: str | None = setting(None, "warm start: a run folder whose weights start this run (same model and "
                                    "shapes); its items keep their ids and embeddings, new items get fresh rows")
    compile: bool = setting(False, "torch.compile the model (the first steps compile, which takes minutes; whether "
                            "it then pays off depends on the device, see the scaling docs)")
    compile_mode: str = setting("default", "torch.compile's mode with --compile true; reduce-overhead also records "
                                "CUDA graphs (one per bucketed batch width, fewest launches, CUDA only)",
                                choices=("default", "reduce-overhead", "max-autotune-no-cudagraphs"))

    def check(self) -> None:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise EchorecError(f"--device {self.device!r}: use auto, cpu, cuda or cuda:N")
        if self.compile_mode != "default" and not self.compile:
            raise EchorecError(f"--compile-mode {self.compile_mode} needs --compile true")
        if self.label_smoothing and self.loss == "sampled":
            # Smoothing over a sampled set would spread mass onto a few random items, not the catalog: another loss.
            raise EchorecError("--label-smoothing applies to the full-softmax loss; use it with --loss full")
        if self.sparse_items:
            # The full softmax touches every row anyway; decay and the weight average would too, every step.
            for bad, why in ((self.loss != "sampled", "--loss sampled"), (self.weight_decay > 0, "--weight-decay 0"),
                             (self.ema > 0, "--ema 0")):
                if bad:
                    raise EchorecError(f"--sparse-items true needs {why} (anything else touches every item row on "
                                       "every step)")


@dataclass
class EvalConfig:
    ks: list[int] = setting([5, 10, 20], "cut-offs K of HR@K, NDCG@K and MRR@K", item_low=1)
    eval_batch_size: int = setting(1024, "users ranked per forward pass", low=1)
    exclude_history: bool = setting(False, "leave the items already in a user's history out of the ranking "
                                    "(S3-Rec/BSARec protocol)")
    sampled: int = setting(0, "0 = full ranking; N = rank among N sampled negatives (labelled sampledN_)", low=0)
    item_chunk: int = setting(0, "score items in slices of this many (bounded memory); 0 = all at once", low=0)
    valid_metric: str = setting("ndcg@10", "hit|ndcg|mrr@K (K in --ks): picks the best epoch, drives early stop")

    def check(self) -> None:
        name, _, k = self.valid_metric.partition("@")
        if name not in ("hit", "ndcg", "mrr") or not k.isdigit() or int(k) not in self.ks:
            raise EchorecError(f"--valid-metric {self.valid_metric!r} must be hit|ndcg|mrr@K with K in --ks {self.ks}")

    @property
    def metric_key(self) -> str:
        """The key of the valid metric in evaluate()'s result."""
        return (f"sampled{self.sampled}_" if self.sampled else "") + self.valid_metric


SECTIONS = (("data", DataConfig), ("train", TrainConfig), ("eval", EvalConfig))
# The sections of a config dict (config.json, a YAML file, `section.field` keys), in their one order.
SECTION_NAMES = ("data", "train", "eval", "model_cfg")


@dataclass
class RunConfig:
    model: str = "sasrec"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    model_cfg: Any = None  # the model's own Config dataclass instance

    def validate(self) -> None:
        """Every check that needs no data: each section's and the model's fields, then the model against
        the training settings. Callers run it before they read data or touch a run folder."""
        from echorec.models import get_model_class
        from echorec.models.base import SequentialRecommender

        cls = get_model_class(self.model)
        for section in (self.data, self.train, self.eval):
            validate(section)
        validate(self.model_cfg if self.model_cfg is not None else cls.Config())
        if self.data.train_mode == "all" and not cls.causal:
            raise EchorecError(f"--train-mode all needs a causal model; {self.model} sees the whole sequence, "
                               "so use --train-mode prefix")
        if self.train.loss == "sampled" and cls.loss is not SequentialRecommender.loss:
            raise EchorecError(f"--loss sampled: {self.model} trains with its own objective; use --loss full")


def run_config_to_dict(rc: RunConfig) -> dict:
    d = {"model": rc.model, "data": to_dict(rc.data), "train": to_dict(rc.train), "eval": to_dict(rc.eval)}
    d["model_cfg"] = to_dict(rc.model_cfg) if rc.model_cfg is not None else {}
    return d


def run_config_from_dict(d: dict, where: str = "config.json") -> RunConfig:
    from echorec.models import get_model_class

    if not isinstance(d, dict):
        raise EchorecError(f"{where}: expected an object, got {type(d).__name__}")
    known = {"model", "meta", *SECTION_NAMES}  # meta: facts about the run, not settings
    unknown = sorted(set(d) - known)
    if unknown:
        raise EchorecError(f"{where}: unknown key(s) {', '.join(unknown)}")
    model = d.get("model", "sasrec")
    if not isinstance(model, str):
        raise EchorecError(f"{where}: model must be a name, got {model!r}")
    cls = get_model_class(model)
    mc = d.get("model_cfg", {})
    if isinstance(mc, dict) and mc.get("backend") == "":  # run folders and flags from before "auto" had a name
        d = {**d, "model_cfg": {**mc, "backend": "auto"}}
    return RunConfig(
        model=model,
        data=from_dict(DataConfig, d.get("data", {}), f"{where}: data"),
        train=from_dict(TrainConfig, d.get("train", {}), f"{where}: train"),
        eval=from_dict(EvalConfig, d.get("eval", {}), f"{where}: eval"),
        model_cfg=from_dict(cls.Config, d.get("model_cfg", {}), f"{where}: model_cfg"),
    )


def with_overrides(d: dict, overrides: dict) -> dict:
    """A copy of config dict `d` with `section.field` keys of `overrides` set (the form studies and tuning use)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
    for key, value in overrides.items():
        if key == "model":
            out["model"] = value
            continue
        sec, _, name = key.partition(".")
        if sec not in SECTION_NAMES or not name:
            raise EchorecError(f"setting {key!r}: use section.field (data, train, eval or model_cfg)")
        out.setdefault(sec, {})[name] = value
    return out


def flatten(d: dict) -> dict:
    """{"train": {"lr": 1e-3}, ...} -> {"train.lr": 1e-3, ...} (sections only)."""
    return {f"{sec}.{k}": v for sec in SECTION_NAMES for k, v in d.get(sec, {}).items()}


MAX_CONFIG_BYTES = 16 << 20  # a config file past this is not a config (and is not read into memory)


def load_yaml(path: str, what: str = "config"):
    """A YAML file (safe types only, no aliases: a `*name` reference can expand to gigabytes), from a regular file
    of bounded size; every failure is one EchorecError naming the file (and the line)."""
    import yaml

    from echorec.fsio import read_bounded

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.events.AliasEvent):
                mark = self.peek_event().start_mark
                raise EchorecError(f"{path}:{mark.line + 1}: YAML aliases (*name) are not allowed in a {what} file")
            return super().compose_node(parent, index)

    text = read_bounded(path, MAX_CONFIG_BYTES, what).decode("utf-8-sig", errors="strict")
    try:
        return yaml.load(text, Loader=NoAliases)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise EchorecError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    except RecursionError:
        raise EchorecError(f"{path}: YAML nested too deeply") from None


def load_config_file(path: str) -> dict:
    """A config file as a dict: YAML (.yaml/.yml) or JSON (anything else, e.g. a run folder's config.json).
    The sections are config.json's: model, data, train, eval, model_cfg (meta is ignored)."""
    import os

    from echorec.fsio import read_json_object

    if os.path.splitext(path)[1].lower() not in (".yaml", ".yml"):
        return read_json_object(path)
    try:
        d = load_yaml(path)
    except UnicodeDecodeError as e:
        raise EchorecError(f"{path}: not UTF-8 text (byte {e.start + 1})") from None
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise EchorecError(f"{path}: expected a mapping of sections (model, data, train, eval, model_cfg), got "
                           f"{type(d).__name__}")
    return d


def config_yaml(rc: RunConfig) -> str:
    """The full resolved config as YAML (what `--print-config` prints and `--config` reads back)."""
    import yaml

    return yaml.safe_dump(run_config_to_dict(rc), sort_keys=False, default_flow_style=False)
