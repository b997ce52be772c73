"""SASRec in RecBole 1.2.1 and in echorec on ml-100k, same settings, side by side in one run.

Settings (both): hidden 64, 2 layers, 2 heads, inner 256, dropout 0.5/0.5, max_len 50, batch 256,
Adam lr 1e-3, CE over all items, prefix augmentation, leave-one-out, full ranking, valid NDCG@10
picks the best epoch, the same number of epochs. RecBole runs in its own virtualenv (it is never a
dependency of echorec): pass its python with --recbole-python.

Prints test HR/NDCG/MRR@10 for both, the per-epoch training time ratio, and how long echorec's
fastest mode (`--train-mode all`) takes to reach RecBole's 2-epoch test NDCG@10. Writes
benchmarks/results/vs_recbole.{json,md}.

    python benchmarks/vs_recbole.py --recbole-python /path/to/recbole-venv/bin/python --epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time

from echorec import sysinfo

HERE = os.path.dirname(os.path.abspath(__file__))

RECBOLE_SCRIPT = r"""
import json, os, sys, time
import numpy as np
# RecBole 1.2.1 uses numpy names removed in numpy 2.
for a, b in [("bool8", np.bool_), ("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)]:
    if not hasattr(np, a):
        setattr(np, a, b)
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
import recbole.model.sequential_recommender as zoo
from recbole.trainer import Trainer
from recbole.utils import init_seed

data_path, epochs, out, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
model_name = sys.argv[5] if len(sys.argv) > 5 else "SASRec"
model_cfg = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {
    "hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2,
    "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "hidden_act": "gelu"}
cfg = {
    "data_path": data_path, "dataset": "ml-100k", "checkpoint_dir": os.path.join(out, "ckpt"),
    "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    "val_interval": None, "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
    "MAX_ITEM_LIST_LENGTH": 50, "train_neg_sample_args": None, "loss_type": "CE",
    "train_batch_size": 256, "eval_batch_size": 1024, "learning_rate": 1e-3, "epochs": epochs,
    "stopping_step": 1000, "eval_step": 1, "metrics": ["Hit", "NDCG", "MRR"], "topk": [5, 10, 20],
    "valid_metric": "NDCG@10", "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
    "group_by": "user"}, "seed": seed, "reproducibility": True, "device": "cpu", "use_gpu": False,
    "show_progress": False, "log_wandb": False, "state": "WARNING", **model_cfg,
}
config = Config(model=model_name, config_dict=cfg)
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, dataset)
model = getattr(zoo, model_name)(config, train_data.dataset).to(config["device"])
trainer = Trainer(config, model)
epoch_times, curve = [], []
orig = trainer._train_epoch
t_start = [None]
def timed(*a, **k):
    t = time.perf_counter()
    r = orig(*a, **k)
    epoch_times.append(time.perf_counter() - t)
    return r
trainer._train_epoch = timed
orig_valid = trainer._valid_epoch
def valid_and_peek(*a, **k):
    r = orig_valid(*a, **k)
    # Test metrics of the current weights after each epoch (for the time-to-quality figure only).
    elapsed = time.perf_counter() - t_start[0]
    res = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    curve.append({"epoch": len(epoch_times), "wall": elapsed, "test_ndcg@10": float(res["ndcg@10"]),
                  "test": {k: float(v) for k, v in res.items()}})
    return r
trainer._valid_epoch = valid_and_peek
t_start[0] = time.perf_counter()
trainer.fit(train_data, valid_data, saved=True, show_progress=False)
test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
json.dump({"test": {k: float(v) for k, v in test.items()}, "epoch_seconds": epoch_times, "curve": curve,
           "n_train_samples": len(train_data.dataset)}, open(os.path.join(out, "recbole.json"), "w"))
"""


def run_recbole(python: str, data_file: str, epochs: int, seed: int = 2020, model: str = "SASRec",
                model_cfg: dict | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "data", "ml-100k"))
        os.symlink(os.path.abspath(data_file), os.path.join(tmp, "data", "ml-100k", "ml-100k.inter"))
        script = os.path.join(tmp, "rb.py")
        with open(script, "w") as f:
            f.write(RECBOLE_SCRIPT)
        env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONWARNINGS": "ignore"}
        argv = [python, script, os.path.join(tmp, "data"), str(epochs), tmp, str(seed)]
        if model != "SASRec" or model_cfg is not None:
            argv += [model, json.dumps(model_cfg or {})]
        subprocess.run(argv, check=True, env=env, cwd=tmp)
        with open(os.path.join(tmp, "recbole.json")) as f:
            return json.load(f)


def run_echorec(epochs: int, mode: str, batch_size: int = 256, target_ndcg: float | None = None,
                max_seconds: float | None = None, seed: int = 42, model: str = "sasrec", **train) -> dict:
    from echorec.config import RunConfig, TrainConfig
    from echorec.data.split import load_split
    from echorec.eval.evaluate import evaluate
    from echorec.models import get_model_class
    from echorec.training.loop import train_model

    # Every echorec default below equals the RecBole setting it is compared with (see ZOO).
    rc = RunConfig(model=model, model_cfg=get_model_class(model).Config(),
                   train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-3, patience=0, progress=False,
                                     seed=seed, **train))
    rc.data.train_mode = mode
    _, split = load_split(rc.data)
    curve = []
    t0 = time.perf_counter()

    class Reached(Exception):
        pass

    def peek(epoch, model, row):
        wall = time.perf_counter() - t0
        test = evaluate(model, split, "test", None, 50)
        ndcg = test["ndcg@10"]
        curve.append({"epoch": epoch, "wall": wall, "test_ndcg@10": ndcg, "epoch_seconds": row["seconds"],
                      "test": test})
        if target_ndcg is not None and ndcg >= target_ndcg:
            raise Reached
        if max_seconds is not None and wall > max_seconds:
            raise Reached

    try:
        res = train_model(rc, split, quiet=False, callback=peek)
        test = res.test
    except Reached:
        test = None
    return {"test": test, "epoch_seconds": [c["epoch_seconds"] for c in curve], "curve": curve}


# echorec model -> (RecBole class, RecBole settings). The echorec defaults equal these (see each config).
ZOO = {
    "gru4rec": ("GRU4Rec", {"embedding_size": 64, "hidden_size": 128, "num_layers": 1, "dropout_prob": 0.3}),
    "narm": ("NARM", {"embedding_size": 64, "hidden_size": 128, "n_layers": 1, "dropout_probs": [0.25, 0.5]}),
    "bert4rec": ("BERT4Rec", {"n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 256,
                              "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "mask_ratio": 0.2,
                              "hidden_act": "gelu"}),
}


def git_commit() -> str:
    from echorec.sysinfo import git_commit as commit

    return commit()


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else 0.5 * (xs[len(xs) // 2 - 1] + xs[len(xs) // 2])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recbole-python", required=True)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--seeds", default="", help="accuracy only: comma-separated seeds, both libraries per seed")
    ap.add_argument("--variants", default="", help="with --zoo: also run echorec with each of these train settings "
                    "changed, e.g. amp=off,bucket=false,clip_grad=0 or bucket=false+clip_grad=0 (to measure where a "
                    "difference comes from)")
    ap.add_argument("--zoo", default="", help="comma-separated baselines (gru4rec,narm,bert4rec) instead of SASRec; "
                    "use with --seeds")
    args = ap.parse_args()
    if args.zoo:
        return zoo_study(args)
    if args.seeds:
        return seeds_study(args)

    from echorec.data.datasets import fetch

    data_file = fetch("ml-100k")
    print(f"[bench] RecBole SASRec, {args.epochs} epochs ...", flush=True)
    rb = run_recbole(args.recbole_python, data_file, args.epochs)
    print(f"[bench] echorec SASRec (prefix mode), {args.epochs} epochs ...", flush=True)
    ours = run_echorec(args.epochs, "prefix")
    rb2 = next(c for c in rb["curve"] if c["epoch"] == 2)
    print(f"[bench] echorec SASRec (all mode) until test NDCG@10 >= RecBole's 2-epoch {rb2['test_ndcg@10']:.4f} ...",
          flush=True)
    # In "all" mode a window of 50 items carries 50 targets, so a smaller batch keeps the step count up.
    fast = run_echorec(200, "all", batch_size=32, target_ndcg=rb2["test_ndcg@10"], max_seconds=rb2["wall"])
    write_main(args, rb, ours, fast)


def write_main(args, rb: dict, ours: dict, fast: dict) -> None:
    """vs_recbole.md (the table and the all-mode race to RecBole's 2-epoch quality) and vs_recbole.json."""
    import torch

    rb2 = next(c for c in rb["curve"] if c["epoch"] == 2)
    reached = fast["curve"][-1]["test_ndcg@10"] >= rb2["test_ndcg@10"]
    rows = []
    for key in ("hit@10", "ndcg@10", "mrr@10", "hit@20", "ndcg@20"):
        a, b = rb["test"][key], ours["test"][key]
        rows.append((key, a, b, (b - a) / a * 100))
    rb_ep, our_ep = median(rb["epoch_seconds"]), median(ours["epoch_seconds"])
    machine = f"{platform.node()} {sysinfo.machine()}, torch {torch.__version__}"
    lines = [
        f"# SASRec: echorec vs RecBole 1.2.1 on ml-100k ({args.epochs} epochs each)",
        "",
        f"machine: {machine}; commit {git_commit()}; command: `python benchmarks/vs_recbole.py --epochs {args.epochs}`",
        "",
        "| test metric | RecBole | echorec | diff |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {k} | {a:.4f} | {b:.4f} | {d:+.1f}% |" for k, a, b, d in rows],
        "",
        f"| training time / epoch (median) | {rb_ep:.1f} s | {our_ep:.1f} s | ratio {our_ep / rb_ep:.2f} |",
        "| --- | ---: | ---: | ---: |",
        "",
        f"Fastest mode (`--train-mode all --batch-size 32`): RecBole's 2-epoch test NDCG@10 is "
        f"{rb2['test_ndcg@10']:.4f}, reached "
        f"after {rb2['wall']:.1f} s (2 epochs incl. validation). echorec all-mode "
        + (f"reached {fast['curve'][-1]['test_ndcg@10']:.4f} after {fast['curve'][-1]['wall']:.1f} s "
           f"({fast['curve'][-1]['epoch']} epochs): {fast['curve'][-1]['wall'] / rb2['wall']:.2f}x of RecBole's time."
           if reached else f"did NOT reach it within {rb2['wall']:.1f} s "
                           f"(best {max(c['test_ndcg@10'] for c in fast['curve']):.4f})."),
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "vs_recbole.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "vs_recbole.json"), "w") as f:
        json.dump({"machine": machine, "commit": git_commit(), "epochs": args.epochs, "recbole": rb,
                   "echorec_prefix": ours, "echorec_all": fast}, f, indent=1)


def seeds_study(args):
    """Test metrics of both libraries over several seeds, at the best-valid epoch and at the last epoch."""
    import statistics

    from echorec.data.datasets import fetch

    data_file = fetch("ml-100k")
    path = os.path.join(args.out, "vs_recbole_seeds.json")
    done = json.load(open(path)) if os.path.exists(path) else {}
    for seed in [int(x) for x in args.seeds.split(",")]:
        if str(seed) in done:
            continue
        print(f"[bench] seed {seed}: RecBole ...", flush=True)
        rb = run_recbole(args.recbole_python, data_file, args.epochs, seed)
        print(f"[bench] seed {seed}: echorec ...", flush=True)
        ours = run_echorec(args.epochs, "prefix", seed=seed)
        done[str(seed)] = {"recbole": {"best": rb["test"], "last": rb["curve"][-1]["test"]},
                           "echorec": {"best": ours["test"], "last": ours["curve"][-1]["test"]}}
        with open(path, "w") as f:
            json.dump(done, f, indent=1)
    lines = [f"# SASRec test metrics over seeds {', '.join(done)}: echorec vs RecBole 1.2.1, ml-100k, "
             f"{args.epochs} epochs", "", f"commit {git_commit()}; `python benchmarks/vs_recbole.py --epochs "
             f"{args.epochs} --seeds {args.seeds}`", "",
             "| metric | epoch picked | RecBole (mean ± std over seeds) | echorec | diff of means |",
             "| --- | --- | ---: | ---: | ---: |"]
    for key in ("hit@10", "ndcg@10", "mrr@10"):
        for which in ("best", "last"):
            a = [v["recbole"][which][key] for v in done.values()]
            b = [v["echorec"][which][key] for v in done.values()]
            fmt = lambda x: (f"{statistics.mean(x):.4f} ± {statistics.stdev(x):.4f}" if len(x) > 1  # noqa: E731
                             else f"{x[0]:.4f}")
            lines.append(f"| {key} | {'best valid' if which == 'best' else 'last'} | {fmt(a)} | {fmt(b)} | "
                         f"{(statistics.mean(b) - statistics.mean(a)) / statistics.mean(a) * 100:+.1f}% |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(args.out, "vs_recbole_seeds.md"), "w") as f:
        f.write(text)


def zoo_study(args):
    """The baselines RecBole also has, both libraries per model and seed, side by side in one run.

    Resumable: finished (model, seed) pairs are kept in vs_recbole_zoo.json and skipped."""



    path = os.path.join(args.out, "vs_recbole_zoo.json")
    done = json.load(open(path)) if os.path.exists(path) else {}
    models = args.zoo.split(",")
    zoo_runs(args, models, done, path)
    text = zoo_table(args, models, done)
    print(text)
    with open(os.path.join(args.out, "vs_recbole_zoo.md"), "w") as f:
        f.write(text)


def parse_variants(spec: str) -> dict:
    """"a=1,b=off" is two variants; "a=1+b=off" one with both settings changed."""
    variants = {}
    for item in filter(None, spec.split(",")):
        variants[item] = {}
        for pair in item.split("+"):
            k, v = pair.split("=")
            variants[item][k] = {"false": False, "true": True}.get(v, float(v) if v[0].isdigit() else v)
    return variants


def zoo_runs(args, models: list[str], done: dict, path: str) -> None:
    """Train what `done` lacks (both libraries per model and seed, and echorec's variants), saving after each."""
    from echorec.data.datasets import fetch

    data_file = fetch("ml-100k")
    seeds = [int(x) for x in (args.seeds or "2020").split(",")]
    variants = parse_variants(args.variants)
    for model in models:
        rb_name, rb_cfg = ZOO[model]
        for seed in seeds:
            for name, override in variants.items():
                key = f"{model}/{seed}/{name}"
                if key in done:
                    continue
                print(f"[bench] {model} seed {seed}: echorec with {name} ...", flush=True)
                ours = run_echorec(args.epochs, "prefix", seed=seed, model=model, **override)
                done[key] = {"echorec": {"best": ours["test"], "last": ours["curve"][-1]["test"],
                                         "epoch_seconds": ours["epoch_seconds"]}}
                with open(path, "w") as f:
                    json.dump(done, f, indent=1)
            key = f"{model}/{seed}"
            if key in done:
                continue
            print(f"[bench] {model} seed {seed}: RecBole {rb_name} ...", flush=True)
            rb = run_recbole(args.recbole_python, data_file, args.epochs, seed, rb_name, rb_cfg)
            print(f"[bench] {model} seed {seed}: echorec ...", flush=True)
            ours = run_echorec(args.epochs, "prefix", seed=seed, model=model)
            done[key] = {"recbole": {"best": rb["test"], "last": rb["curve"][-1]["test"],
                                     "epoch_seconds": rb["epoch_seconds"]},
                         "echorec": {"best": ours["test"], "last": ours["curve"][-1]["test"],
                                     "epoch_seconds": ours["epoch_seconds"]}}
            with open(path, "w") as f:
                json.dump(done, f, indent=1)


def zoo_table(args, models: list[str], done: dict) -> str:
    """The markdown table of the finished (model, seed) pairs and variants in `done`."""
    import statistics

    import torch

    threads = os.environ.get("OMP_NUM_THREADS", "default")
    machine = f"{sysinfo.machine()}, OMP_NUM_THREADS={threads}, torch {torch.__version__}"
    lines = [f"# Baselines: echorec vs RecBole 1.2.1 on ml-100k, {args.epochs} epochs, same settings", "",
             f"machine: {machine}; commit {git_commit()}; `python benchmarks/vs_recbole.py --epochs {args.epochs} "
             f"--zoo {args.zoo} --seeds {args.seeds}{' --variants ' + args.variants if args.variants else ''}` "
             f"(runs from several invocations are merged by (model, seed); the seeds column counts them)", "",
             "Test metrics (mean ± std over seeds) at the best-valid epoch and at the last epoch; "
             "training time per epoch is the median over all epochs and seeds.", "",
             "| model | seeds | metric | epoch picked | RecBole | echorec | diff of means |",
             "| --- | --- | --- | --- | ---: | ---: | ---: |"]

    def fmt(x):
        return f"{statistics.mean(x):.4f} ± {statistics.stdev(x):.4f}" if len(x) > 1 else f"{x[0]:.4f}"

    times = []
    for model in models:
        runs = [v for k, v in done.items() if k.split("/")[0] == model and k.count("/") == 1]
        if not runs:
            continue
        for metric in ("hit@10", "ndcg@10", "mrr@10"):
            for which in ("best", "last"):
                a = [r["recbole"][which][metric] for r in runs]
                b = [r["echorec"][which][metric] for r in runs]
                lines.append(f"| {model} | {len(runs)} | {metric} | {'best valid' if which == 'best' else 'last'} | "
                             f"{fmt(a)} | {fmt(b)} | "
                             f"{(statistics.mean(b) - statistics.mean(a)) / statistics.mean(a) * 100:+.1f}% |")
        for name in sorted({k.split("/", 2)[2] for k in done if k.split("/")[0] == model and k.count("/") == 2}):
            vs = {k.split("/")[1]: v for k, v in done.items() if k.split("/")[0] == model and k.endswith("/" + name)}
            paired = [(done[f"{model}/{sd}"], v) for sd, v in vs.items() if f"{model}/{sd}" in done]
            for which in ("best", "last"):
                a = [p[0]["recbole"][which]["ndcg@10"] for p in paired]
                b = [p[1]["echorec"][which]["ndcg@10"] for p in paired]
                if a:
                    lines.append(f"| {model} with {name} | {len(a)} | ndcg@10 | "
                                 f"{'best valid' if which == 'best' else 'last'} | {fmt(a)} | {fmt(b)} | "
                                 f"{(statistics.mean(b) - statistics.mean(a)) / statistics.mean(a) * 100:+.1f}% |")
        rt = median([s for r in runs for s in r["recbole"]["epoch_seconds"]])
        ot = median([s for r in runs for s in r["echorec"]["epoch_seconds"]])
        times.append(f"| {model} | {rt:.1f} s | {ot:.1f} s | {ot / rt:.2f} |")
    names = sorted({k.split("/", 2)[2] for k in done if k.count("/") == 2})
    if names:
        lines += ["", f"Rows \"with X\": echorec rerun with one training setting changed ({', '.join(names)}), "
                  f"same seeds, to test whether that setting explains a gap (`--variants {','.join(names)}`)."]
    lines += ["", "| model | RecBole s/epoch | echorec s/epoch | ratio |", "| --- | ---: | ---: | ---: |", *times]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
