"""The `echorec` command: train, evaluate, data info, models.

Flags map 1:1 onto config fields (`--max-len` sets data.max_len, `--hidden` the model's hidden, ...);
the model's own fields are added once `--model` is known. User mistakes print one `error: ...` line
and exit with status 2.
"""

from __future__ import annotations

import json
import os
import sys

from echorec.config import SECTION_NAMES, SECTIONS, DataConfig
from echorec.errors import EchorecError
from echorec.fields import Parser, add_flags, flag_fields, from_dict, validate


def _add_config_flags(p, model_cls):
    """One flag per field of the data/train/eval sections and of the model's Config, in a group each."""
    seen = {"--model", "--out", "--config"}
    groups = [(sec, cls, f"{sec} settings") for sec, cls in SECTIONS]
    groups.append(("model_cfg", model_cls.Config, f"{model_cls.name} settings"))
    for sec, cls, title in groups:
        clash = seen & {flag for flag, *_ in flag_fields(cls)}
        if clash and sec == "model_cfg":  # a plugin's Config: its author's mistake, named, one line
            raise EchorecError(f"model {model_cls.name!r} ({model_cls.__module__}): its setting(s) "
                               f"{', '.join(sorted(clash))} clash with echorec's own flags; rename them in its Config")
        if clash:
            raise RuntimeError(f"config fields of {sec} clash with other flags: {sorted(clash)}")
        seen.update(add_flags(p.add_argument_group(title), cls, sec))


def _metrics_table(metrics: dict, ks=(5, 10, 20)) -> str:
    rows = []
    for split in ("valid", "test"):
        m = metrics[split]
        prefix = next((k.split("_")[0] + "_" for k in m if k.startswith("sampled")), "")
        cells = [f"{m.get(f'{prefix}{name}@{k}', float('nan')):.4f}" for name in ("hit", "ndcg", "mrr") for k in ks]
        rows.append((split, cells))
    head = [f"{name.upper() if name != 'hit' else 'HR'}@{k}" for name in ("hit", "ndcg", "mrr") for k in ks]
    w = max(len(h) for h in head) + 1
    lines = ["split  " + "".join(h.rjust(w) for h in head)]
    for split, cells in rows:
        lines.append(f"{split:<6} " + "".join(c.rjust(w) for c in cells))
    return "\n".join(lines)


def _train_parser(model_cls, model: str):
    p = Parser(prog="echorec train", description="Train a model and write a run folder.")
    p.add_argument("--model", default=model, help="registered model name (see `echorec models`)")
    p.add_argument("--out", default=None, help="run folder to write (config, weights, metrics, history)")
    p.add_argument("--config", default=None, help="YAML or JSON file with model/data/train/eval/model_cfg sections "
                   "(a run folder's config.json too); flags override its values")
    p.add_argument("--print-config", action="store_true",
                   help="print the full resolved config as YAML (a file --config takes) and exit")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR from its last checkpoint (same config; --epochs and --patience "
                        "may be raised to train on)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--allow-data-change", action="store_true",
                   help="--resume even though the data file changed since the run started")
    _add_config_flags(p, model_cls)
    return p


def cmd_train(argv):
    import echorec.api as api
    from echorec.models import get_model_class

    pre = Parser(prog="echorec train", add_help=False)
    for flag in ("--model", "--config", "--resume", "--init-from"):
        pre.add_argument(flag, default=None)
    known, _ = pre.parse_known_args(argv)
    # The model (and so its flags) comes from --model, else the run being resumed, the config file or the parent.
    base = api.starting_config(known.config, known.resume, known.init_from)
    model = known.model or base.get("model", "sasrec")
    args = vars(_train_parser(get_model_class(model), model).parse_args(argv))
    given = {k: v for k, v in args.items() if v is not None and "." in k}  # section.field flags
    if known.resume:
        if args["out"] not in (None, known.resume):
            raise EchorecError("--resume DIR continues in DIR; drop --out")
        rc = api.resume_config(known.resume, overrides=given, model=model)
    else:
        rc = api.make_config(base or None, overrides=given, model=model)
    if args["print_config"]:
        from echorec.config import config_yaml

        print(config_yaml(rc), end="")
        return
    out = known.resume or args["out"]
    if not out:
        raise EchorecError("echorec train: the following arguments are required: --out")
    run = api.train(rc, out=out, resume=bool(known.resume), overwrite=args["overwrite"],
                    allow_data_change=args["allow_data_change"])
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun, rank 0 reports
    _report_run(run, model, out)


def _report_run(run, model: str, out: str) -> None:
    metrics = run.metrics
    print()
    print(f"{model} on {run.config.data.dataset} — {metrics['evaluation']}, best epoch {metrics['best_epoch']} of "
          f"{metrics['epochs_run']}, {metrics['seconds_per_epoch']:.1f} s/epoch")
    print(_metrics_table(metrics, run.config.eval.ks))
    print(f"\nrun folder: {os.path.abspath(out)}  (config.json, model.safetensors, metrics.json, history.csv)")
    print("next: echorec evaluate --run " + out +
          " | more epochs: --epochs 200 --patience 10 | other models: echorec models")


def cmd_evaluate(argv):
    p = Parser(prog="echorec evaluate", description="Reload a run folder and evaluate it.")
    p.add_argument("--run", required=True, help="the run folder (written by echorec train)")
    p.add_argument("--split", choices=["valid", "test"], default="test", help="which held-out targets to score; default: test")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: the run's training device "
                   "setting)")
    p.add_argument("--allow-data-change", action="store_true",
                   help="evaluate even though the data file changed since the run was trained")
    args = p.parse_args(argv)
    import echorec.api as api

    run = api.load_run(args.run)
    m = run.evaluate(args.split, args.device, args.allow_data_change)
    if args.json:
        print(json.dumps(m, indent=2))
        return
    print(_metrics_table({"valid": m, "test": m}).splitlines()[0])
    print(_metrics_table({"valid": m, "test": m}).splitlines()[2].replace("test  ", args.split.ljust(6), 1))
    saved = (run.metrics or {}).get(args.split)
    if saved is not None:
        same = all(abs(saved[k] - m[k]) == 0 for k in saved if k in m)
        print(f"matches metrics.json: {'yes' if same else 'NO'}")


def cmd_data(argv):
    p = Parser(prog="echorec data", description="Inspect datasets.")
    sub = p.add_subparsers(dest="what", required=True, help="info: counts and lengths of a dataset | list: the named datasets")
    info = sub.add_parser("info", help="users, items, interactions, length statistics")
    info.add_argument("dataset", help="a named dataset (echorec data list) or a path to a log file")
    add_flags(info, DataConfig, "data", skip=("dataset", "max_len", "train_mode", "split", "valid_from", "test_from"))
    sub.add_parser("list", help="named datasets")
    args = p.parse_args(argv)
    from echorec.data.datasets import NAMED

    if args.what == "list":
        for name, ds in NAMED.items():
            print(f"{name:10s} {ds.description}")
        return
    given = {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith("data.") and v is not None}
    dc = from_dict(DataConfig, {"dataset": args.dataset, **given}, where="flags")
    validate(dc)
    from echorec.data.datasets import resolve
    from echorec.data.preprocess import load_sequences

    path = resolve(dc.dataset)
    data = load_sequences(path, dc.format, (dc.user_col, dc.item_col, dc.time_col, dc.rating_col), dc.min_rating,
                          dc.kcore, dc.dedup)
    import numpy as np

    lens = data.lengths
    n = len(data.items)
    print(f"dataset       {dc.dataset}\nfile          {path}")
    print(f"users         {data.n_users:,}\nitems         {data.n_items:,}\ninteractions  {n:,}")
    print(f"density       {n / (data.n_users * data.n_items):.4%}")
    if data.times is None:
        print("duplicates    - (no timestamps: a repeated item is a new event)")
    elif data.deduped:
        print(f"duplicates    0 ({data.duplicates:,} rows dropped by --dedup)")
    else:
        print(f"duplicates    {data.duplicates:,} rows repeat an earlier (user, item, time)"
              + ("; --dedup true drops them" if data.duplicates else ""))
    print(f"seq length    min {lens.min()} / median {int(np.median(lens))} / mean {lens.mean():.2f} / max {lens.max()}")
    print(f"users with >= 3 items (evaluated): {(lens >= 3).sum():,}")


def cmd_recommend(argv):
    p = Parser(prog="echorec recommend", description="Recommend the next items for one history (JSON out).")
    p.add_argument("--run", required=True, help="the run folder (written by echorec train)")
    p.add_argument("--history", default="", help="raw item ids, oldest first, comma-separated")
    p.add_argument("-k", type=int, default=10, help="how many items; default: 10")
    p.add_argument("--include-seen", action="store_true", help="allow items already in the history")
    p.add_argument("--allow", default=None, help="only these raw item ids may be recommended: comma-separated, or "
                   "@FILE with one id per line")
    p.add_argument("--deny", default=None, help="never recommend these raw item ids: comma-separated, or @FILE")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (a GPU when there is one)")
    args = p.parse_args(argv)
    import echorec.api as api

    history = [h.strip() for h in args.history.split(",") if h.strip()]
    print(json.dumps(api.recommend(args.run, history, args.k, not args.include_seen, args.device,
                                   _id_list(args.allow), _id_list(args.deny)), indent=2))


def _id_list(text: str | None) -> list[str] | None:
    """--allow / --deny: "a,b,c" or "@file" (one id per line)."""
    if text is None:
        return None
    if text.startswith("@"):
        from echorec.serve.filters import read_id_list

        return read_id_list(text[1:])
    return [x.strip() for x in text.split(",") if x.strip()]


def cmd_predict(argv):
    from echorec.data.readers import FORMATS

    p = Parser(prog="echorec predict", description="Batch scoring: the top-k of every user of a log (or of the users "
               "in --users), written to a CSV or Parquet table of raw ids: user, rank, item, score.")
    p.add_argument("--run", required=True, help="the run folder (written by echorec train)")
    p.add_argument("--out", required=True, help="the table to write: .csv, or .parquet (needs pyarrow)")
    p.add_argument("--data", default=None, help="the log to score, in any format echorec reads (default: the run's "
                   "own data); each user's history is all of it")
    p.add_argument("--users", default=None, help="a file of raw user ids, one per line: score only these (a user "
                   "absent from the log gets the most popular items)")
    p.add_argument("-k", type=int, default=10, help="items per user; default: 10")
    p.add_argument("--include-seen", action="store_true", help="allow items already in the user's history")
    p.add_argument("--allow", default=None, help="only these raw item ids: comma-separated, or @FILE")
    p.add_argument("--deny", default=None, help="never these raw item ids: comma-separated, or @FILE")
    p.add_argument("--format", default=None, choices=["csv", "parquet"], help="the table's format (default: from "
                   "--out's extension)")
    p.add_argument("--data-format", default=None, choices=FORMATS, help="--data's format (default: the run's setting)")
    for col in ("user", "item", "time"):
        p.add_argument(f"--{col}-col", default=None, help=f"--data's {col} column (default: the run's setting)")
    p.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda or cuda:N")
    p.add_argument("--budget-mb", type=float, default=256.0, help="memory for one chunk's scores (users x items); "
                   "default: 256")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--progress", choices=["true", "false"], default="true", help="a progress bar with users/s (on a "
                   "terminal)")
    args = p.parse_args(argv)
    if args.budget_mb <= 0:
        raise EchorecError(f"--budget-mb {args.budget_mb}: must be positive")
    from echorec.serve.predict import predict

    columns = {k: v for k, v in (("format", args.data_format), ("user_col", args.user_col),
                                 ("item_col", args.item_col), ("time_col", args.time_col)) if v is not None}
    predict(args.run, args.out, args.data, args.users, args.k, not args.include_seen, _id_list(args.allow),
            _id_list(args.deny), args.format, args.device, args.budget_mb, args.overwrite, args.progress == "true",
            columns, log=lambda m: print(m, file=sys.stderr))


def cmd_serve(argv):
    p = Parser(prog="echorec serve", description="HTTP service: POST /recommend, /recommend/batch; GET /health, /model")
    p.add_argument("--run", required=True, help="the run folder (written by echorec train)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface); default: 127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="TCP port, 0..65535 (0: any free one); default: 8000")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="micro-batching window")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (a GPU when there is one)")
    p.add_argument("--docs", action="store_true", help="Swagger UI at /docs (its scripts come from a CDN)")
    p.add_argument("--deny-file", default=None, help="raw item ids (one per line) never recommended; edit the file "
                   "to change the list, the service re-reads it without a restart")
    p.add_argument("--max-connections", type=int, default=64, help="open connections served at once; past it a "
                   "request gets 503; default: 64")
    args = p.parse_args(argv)
    try:
        from echorec.serve.http import serve
    except ImportError as e:
        raise EchorecError(f"serving needs FastAPI and uvicorn: pip install 'echorec[serve]' ({e})") from None

    def announce(url):
        print(f"serving {args.run} on {url}" + (f" (docs at {url}/docs)" if args.docs else ""), file=sys.stderr,
              flush=True)

    serve(args.run, args.host, args.port, args.max_wait_ms / 1000, args.device, docs=args.docs, announce=announce,
          deny_file=args.deny_file, max_connections=args.max_connections)


def cmd_export(argv):
    p = Parser(prog="echorec export", description="The run's model and its top-k as TorchScript (torch.jit.load) or "
               "ONNX (any runtime; dynamic batch and history length; the id map written beside it).")
    p.add_argument("--run", required=True, help="the run folder (written by echorec train)")
    p.add_argument("--out", required=True, help="the file to write (.onnx: ONNX)")
    p.add_argument("--format", default=None, choices=["torchscript", "onnx"], help="default: onnx for a .onnx name, "
                   "else torchscript")
    p.add_argument("-k", type=int, default=10, help="items the exported top-k returns; default: 10")
    p.add_argument("--device", default="cpu", help="TorchScript: cpu, cuda, cuda:N or auto (the graph runs on that "
                   "device type); ONNX graphs are CPU graphs")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = p.parse_args(argv)
    import echorec.api as api

    path = api.export(args.run, args.out, args.k, args.device, args.format, args.overwrite)
    print(path)
    if path.lower().endswith(".onnx") or args.format == "onnx":
        from echorec.serve.export import items_beside

        print(f"id map: {items_beside(path)} (internal_id -> raw_id). Input 'seq': int64 (batch, length) internal "
              f"ids, oldest first, 0 = padding; outputs 'scores' (batch, k) and 'items' (batch, k) internal ids.",
              file=sys.stderr)


def _protocol_flags(p):
    """The study protocol's settings as flags (shared by `bench accuracy` and `tune`, which must agree): every
    data/train/eval field that is not set per cell."""
    from echorec.bench.accuracy import PER_CELL

    for sec, cls in SECTIONS:
        add_flags(p.add_argument_group(f"protocol: {sec} settings (one protocol per study folder)"), cls, sec,
                  skip={k.split(".", 1)[1] for k in PER_CELL if k.startswith(sec + ".")})


def _protocol(args) -> dict:
    return {k: v for k, v in vars(args).items() if v is not None and "." in k}


def _study_settings(args, extra: list[str], models: list[str]) -> tuple[dict, list[str]]:
    """A study's protocol overrides and model specs from --config FILE, the protocol flags and any model flags
    (`--layers 2 --dropout 0.4`). Flags win over the file. A model setting joins the spec of every model whose
    Config has that field (`echomamba4rec+layers=2`), so the results tables name it; one that no model of the
    study has is an error."""
    import dataclasses

    from echorec.bench.accuracy import PER_CELL, parse_model_spec
    from echorec.config import flatten, load_config_file
    from echorec.models import get_model_class

    proto, model_set = {}, {}
    if args.config:
        d = load_config_file(args.config)
        for sec in SECTION_NAMES:
            if not isinstance(d.get(sec) or {}, dict):
                raise EchorecError(f"{args.config}: {sec} must be a mapping of settings, got {type(d[sec]).__name__}")
        # A run folder's config.json works too: its per-cell settings (dataset, seed, ...) come from the study.
        proto = {k: v for k, v in flatten({s: d.get(s) or {} for s in SECTION_NAMES[:3]}).items()
                 if k not in PER_CELL}
        model_set = dict(d.get("model_cfg") or {})
    proto.update(_protocol(args))
    i = 0
    while i < len(extra):
        flag = extra[i]
        if not flag.startswith("--"):
            raise EchorecError(f"unexpected argument {flag!r}")
        name, eq, value = flag[2:].partition("=")
        if not eq:
            if i + 1 >= len(extra):
                raise EchorecError(f"{flag}: needs a value")
            value, i = extra[i + 1], i + 1
        model_set[name.replace("-", "_")] = value
        i += 1
    specs = []
    fields_of = {m: {f.name for f in dataclasses.fields(get_model_class(parse_model_spec(m)[0]).Config)}
                 for m in models}
    for key in model_set:
        if not any(key in f for f in fields_of.values()):
            raise EchorecError(f"--{key.replace('_', '-')}: not a setting of any model in this study "
                               f"({', '.join(parse_model_spec(m)[0] for m in models)})")
    for m in models:
        _, own = parse_model_spec(m)
        add = [f"+{k}={_spec_value(v)}" for k, v in model_set.items()
               if k in fields_of[m] and f"model_cfg.{k}" not in own]
        specs.append(m + "".join(add))
    return proto, specs


def _spec_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v)


BENCH_HELP = """usage: echorec bench {accuracy,speed} ...

  accuracy   train models x datasets x seeds under one protocol; tables, paired tests, learning curves
  speed      training time, inference latency and memory of each model vs sequence length

`echorec bench accuracy --help` and `echorec bench speed --help` list their flags."""


def cmd_bench(argv):
    if argv and argv[0] in ("-h", "--help"):
        print(BENCH_HELP)
        return
    if not argv or argv[0] not in ("accuracy", "speed"):
        hint = f"unknown subcommand {argv[0]!r}{_did_you_mean(argv[0], ('accuracy', 'speed'))}; " if argv else ""
        raise EchorecError(f"echorec bench: {hint}use `bench accuracy ...` or `bench speed ...` (see --help of each)")
    if argv[0] == "speed":
        from echorec.bench.speed import main as speed_main

        return speed_main(argv[1:])
    return _bench_accuracy(argv[1:])


def _accuracy_parser():
    p = Parser(prog="echorec bench accuracy",
                description="Train models x datasets x seeds under one protocol; write results.csv/.md and "
                            "learning curves. Resumable: finished cells are skipped.")
    p.add_argument("--models", help="comma-separated model specs: a registered model, optionally "
                   "with settings of its own for an ablation column (echomamba4rec+filter=false)")
    p.add_argument("--datasets", help="comma-separated named datasets or paths")
    p.add_argument("--plan", default=None, help="a leaderboard plan (YAML: datasets, models with their recipes, "
                   "seeds, modes side-by-side, tuning budget; see the studies docs): runs what is "
                   "missing of it into --out, records first; --models/--datasets/--seeds and the protocol flags "
                   "then come from the plan")
    p.add_argument("--report", action="store_true", help="with --plan: only rewrite the tables from the records")
    p.add_argument("--max-jobs", type=int, default=0, help="with --plan: start at most this many jobs, then stop "
                   "(a slice of the work; 0: all)")
    p.add_argument("--seeds", default="3", help="a count (3: seeds 42, 43, 44) or a list (1,2,3)")
    p.add_argument("--out", required=True, help="study folder (created; re-running continues it)")
    p.add_argument("--budget", type=int, default=0,
                   help="tuning trials per model and dataset before training (needs optuna; 0: the configs' "
                        "defaults, or settings already in OUT/tuned/)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0: default)")
    p.add_argument("--jobs", type=int, default=1, help="cells trained at once, each as its own `echorec train` "
                   "process (with --threads 1, one per core); default: 1")
    p.add_argument("--config", default=None, help="YAML/JSON file: its data/train/eval sections set the protocol "
                   "(flags win), its model_cfg section the models' settings")
    _protocol_flags(p)
    p.epilog = ("Any model setting may follow as a flag (--layers 2 --dropout 0.4): it applies to every model of "
                "the study that has it, and shows in the model's column (echomamba4rec+layers=2).")
    return p


def _bench_accuracy(argv):
    from echorec.bench.accuracy import parse_seeds, run_study

    args, extra = _accuracy_parser().parse_known_args(argv)
    if args.plan:
        from echorec.bench.leaderboard import run_plan

        if args.models or args.datasets or extra or _protocol(args):
            raise EchorecError("--plan sets the models, datasets and protocol itself; drop --models, --datasets and "
                               "the protocol flags")
        run_plan(args.plan, args.out, jobs=args.jobs, threads=args.threads, log=lambda m: print(m, flush=True),
                 report_only=args.report, max_jobs=args.max_jobs)
        print(f"tables: {os.path.join(args.out, 'results.md')}")
        return
    if not args.models or not args.datasets:
        raise EchorecError("bench accuracy needs --models and --datasets (or a --plan)")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    proto, models = _study_settings(args, extra, models)
    datasets = [x.strip() for x in args.datasets.split(",") if x.strip()]
    seeds = parse_seeds(args.seeds)
    if args.budget > 0:
        from echorec.bench.tune import tune_study

        tune_study(args.out, models, datasets, args.budget, proto, threads=args.threads)
    rows = run_study(args.out, models, datasets, seeds, proto, threads=args.threads,
                     log=lambda m: print(m, flush=True), jobs=args.jobs)
    print(f"\n{len(rows)} finished runs; tables: {os.path.join(args.out, 'results.md')}")


def cmd_tune(argv):
    p = Parser(prog="echorec tune", description="A fixed-budget Optuna search (valid NDCG@10) per model and "
                "dataset; the best settings are saved in OUT/tuned/ and reused by `bench accuracy --out OUT`.")
    p.add_argument("--models", required=True, help="comma-separated model specs (as in bench accuracy)")
    p.add_argument("--datasets", required=True, help="comma-separated named datasets or paths")
    p.add_argument("--trials", type=int, default=10, help="trials per model and dataset; default: 10")
    p.add_argument("--out", required=True, help="study folder")
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0: default)")
    p.add_argument("--config", default=None, help="YAML/JSON file: its data/train/eval sections set the protocol "
                   "(flags win), its model_cfg section the models' fixed settings")
    _protocol_flags(p)
    args, extra = p.parse_known_args(argv)
    proto, models = _study_settings(args, extra, [m for m in args.models.split(",") if m])
    from echorec.bench.tune import tune_study

    tune_study(args.out, models, [x for x in args.datasets.split(",") if x], args.trials, proto, threads=args.threads)


def cmd_models(argv):
    from echorec.models import get_model_class, model_names

    for name in model_names():
        cls = get_model_class(name)
        print(f"{name:15s} {'causal ' if cls.causal else 'bidir. '} {cls.description}")


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "data": cmd_data, "models": cmd_models,
            "recommend": cmd_recommend, "predict": cmd_predict, "serve": cmd_serve, "export": cmd_export,
            "bench": cmd_bench, "tune": cmd_tune}


def _did_you_mean(word: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-V", "--version"):
        from echorec import __version__

        print(f"echorec {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: echorec {train,evaluate,data,models,recommend,predict,serve,export,bench,tune} ...\n\n"
              "  train      train a model, write a run folder\n"
              "  evaluate   reload a run folder and recompute its metrics\n"
              "  data       data info DS | data list\n"
              "  models     list registered models\n"
              "  recommend  next items for one history, as JSON\n"
              "  predict    batch scoring: every user's top-k to a CSV or Parquet table\n"
              "  serve      HTTP service over a run folder\n"
              "  export     TorchScript of a run's model + top-k\n"
              "  bench      bench accuracy (models x datasets x seeds tables) | bench speed (time/memory vs length)\n"
              "  tune       fixed-budget hyper-parameter search (optuna) for bench accuracy\n\n"
              "`echorec COMMAND --help` explains each flag; `echorec --version` prints the version.")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"error: unknown command {cmd!r}{_did_you_mean(cmd, COMMANDS)}; use one of {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    try:
        COMMANDS[cmd](rest)
    except EchorecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
