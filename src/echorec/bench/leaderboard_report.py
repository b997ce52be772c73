"""The leaderboard's tables and plots, rewritten from its committed records alone (no run folder needed).

OUT/results.md holds, per dataset: the leaderboard (mean ± SD over seeds of test NDCG@10 and HR@10, valid
NDCG@10, epochs, training time per cell and the mode each model trained in), the paired per-user test of the
flagship against the best other model, and a plot of valid NDCG@10 against training time (time_<dataset>.png).
Then the modes side-by-side, the tuning trials, and the recipes with their sources. OUT/headline.md is the
one table the README shows: test NDCG@10 per model and dataset.
"""

from __future__ import annotations

import math
import os

from echorec.bench.plan import KEY, Plan
from echorec.bench.records import (
    all_records,
    mode_decision,
    mode_name,
    mode_record_path,
    paired,
    read_record,
    record_path,
    tuned_path,
)
from echorec.bench.stats import mean, std
from echorec.fsio import atomic_write_text

FLAGSHIP = "echomamba4rec"


def cell_minutes(rec: dict) -> float:
    """Training plus validation time of a cell, summed over its epochs (a resumed cell counts every epoch once)."""
    return sum(float(h["seconds"]) + float(h.get("eval_seconds", 0.0)) for h in rec["history"]) / 60.0


def _ms(xs: list[float], digits: int = 4) -> str:
    if not xs:
        return "—"
    return f"{mean(xs):.{digits}f} ± {std(xs):.{digits}f}" if len(xs) > 1 else f"{xs[0]:.{digits}f}"


def normal_p(z: float) -> float:
    """Two-sided p of a standard normal statistic (thousands of users: the t distribution is the normal)."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def dataset_records(out: str, plan: Plan, label: str) -> dict[str, list[dict]]:
    seeds = list(plan.seeds) + ([plan.third_seed] if plan.third_seed is not None else [])
    found = {}
    for m in plan.models:
        recs = [read_record(record_path(out, label, m, s)) for s in seeds]
        found[m] = [r for r in recs if r is not None]
    return found


def winner(plan: Plan, recs: dict[str, list[dict]]) -> str | None:
    """The model with the best mean test NDCG@10, once every model has a cell (a partial column has none)."""
    if not all(recs[m] for m in plan.models):
        return None
    return max(plan.models, key=lambda m: mean([r["metrics"]["test"][KEY] for r in recs[m]]))


def leaderboard_table(plan: Plan, label: str, recs: dict[str, list[dict]]) -> list[str]:
    lines = ["| model | mode | seeds | test NDCG@10 | test HR@10 | valid NDCG@10 | best / run epochs | "
             "minutes per cell | s per epoch |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    ranked = sorted(plan.models, key=lambda m: -mean([r["metrics"]["test"][KEY] for r in recs[m]]) if recs[m] else 1)
    best = winner(plan, recs)
    for m in ranked:
        rs = recs[m]
        if not rs:
            lines.append(f"| {m} | | 0 | pending | | | | | |")
            continue
        nd = _ms([r["metrics"]["test"][KEY] for r in rs])
        modes = sorted({r["config"]["data"]["train_mode"] for r in rs})
        capped = sum(1 for r in rs if r["metrics"]["epochs_run"] >= r["config"]["train"]["epochs"])
        lines.append(
            f"| {m} | {', '.join(modes)} | {len(rs)} | {f'**{nd}**' if m == best else nd} | "
            f"{_ms([r['metrics']['test']['hit@10'] for r in rs])} | "
            f"{_ms([r['metrics']['valid'][KEY] for r in rs])} | "
            f"{mean([r['metrics']['best_epoch'] for r in rs]):.0f} / {mean([r['metrics']['epochs_run'] for r in rs]):.0f}"
            f"{' (cap)' if capped else ''} | {_minutes(mean([cell_minutes(r) for r in rs]))} | "
            f"{mean([r['metrics']['seconds_per_epoch'] for r in rs]):.1f} |")
    return lines


def flagship_test(plan: Plan, recs: dict[str, list[dict]]) -> list[str]:
    """The flagship against the best other model, per user (seeds averaged): NDCG@10 and HR@10."""
    if FLAGSHIP not in recs or not recs[FLAGSHIP]:
        return []
    others = [m for m in plan.models if m != FLAGSHIP and recs[m]]
    if not others:
        return []
    rival = max(others, key=lambda m: mean([r["metrics"]["test"][KEY] for r in recs[m]]))
    a, b = [r["test_ranks"] for r in recs[FLAGSHIP]], [r["test_ranks"] for r in recs[rival]]
    out = []
    for metric, name in ((KEY, "NDCG@10"), ("hit@10", "HR@10")):
        ma, mb, se, n = paired(a, b, metric)
        z = (ma - mb) / se if se > 0 else float("nan")
        out.append(f"- {FLAGSHIP} vs {rival} (the best other model here), {name} per user, seeds averaged "
                   f"({len(a)} and {len(b)}): {ma:.4f} vs {mb:.4f}, difference {ma - mb:+.4f} "
                   f"({(ma - mb) / mb * 100:+.1f}%), paired SE {se:.4f}, z = {z:+.2f}, p = {normal_p(z):.3f} "
                   f"({n:,} users)")
    return out


def plot_time(out: str, plan: Plan, label: str, recs: dict[str, list[dict]]) -> str | None:
    """time_<label>.png: valid NDCG@10 per epoch against the cell's cumulative training + validation time."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not any(recs.values()):
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, m in enumerate(plan.models):
        color = plt.get_cmap("tab10")(i % 10)
        for j, r in enumerate(recs[m]):
            t, xs, ys = 0.0, [], []
            for h in r["history"]:
                t += float(h["seconds"]) + float(h.get("eval_seconds", 0.0))
                xs.append(t / 60.0)
                ys.append(float(h[f"valid_{KEY}"]))
            ax.plot(xs, ys, color=color, lw=1.1, alpha=0.85, label=m if j == 0 else None)
            best = r["metrics"]["best_epoch"] - 1
            if 0 <= best < len(xs):
                ax.plot([xs[best]], [ys[best]], "o", color=color, ms=4)
    ax.set_xscale("log")
    ax.set_xlabel("training + validation time (minutes, one thread; log scale)")
    ax.set_ylabel("valid NDCG@10")
    ax.set_title(f"{label}: valid NDCG@10 against time (dots: the selected epoch)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = os.path.join(out, f"time_{label}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def modes_section(out: str, plan: Plan) -> list[str]:
    models = [m for m, mp in plan.models.items() if mp.modes]
    if not models:
        return []
    cand = mode_name(plan, "candidate")
    extra = ", ".join(f"{k} {v}" for k, v in plan.candidate.items())
    lines = ["## Training mode: prefix or " + cand, "",
             f"On {plan.modes_dataset}, seeds {', '.join(map(str, plan.modes_seeds))}, the published recipe: each "
             f"causal model trains once with one sample per prefix and once in the candidate mode ({extra}). The "
             f"candidate is kept when its test NDCG@10 (per user, seeds averaged) is at most one paired SE below "
             f"prefix mode's.", "",
             f"| model | prefix NDCG@10 | {cand} NDCG@10 | difference | paired SE | minutes per cell, prefix / {cand} "
             f"| mode used |", "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for m in models:
        d = mode_decision(out, plan, m)
        recs = {mode: [read_record(mode_record_path(out, plan, m, mode, s)) for s in plan.modes_seeds]
                for mode in ("prefix", "candidate")}
        done = {mode: [r for r in rs if r is not None] for mode, rs in recs.items()}
        mins = " / ".join(_minutes(mean([cell_minutes(r) for r in done[mode]])) if done[mode] else "—"
                          for mode in ("prefix", "candidate"))
        if d is None:
            lines.append(f"| {m} | {len(done['prefix'])}/{len(plan.modes_seeds)} done | "
                         f"{len(done['candidate'])}/{len(plan.modes_seeds)} done | | | {mins} | pending |")
            continue
        lines.append(f"| {m} | {d['prefix']:.4f} | {d['candidate']:.4f} | {d['candidate'] - d['prefix']:+.4f} | "
                     f"{d['paired_se']:.4f} | {mins} | {mode_name(plan, d['mode'])} |")
    return lines + [""]


def tuning_section(out: str, plan: Plan) -> list[str]:
    if plan.tune_dataset is None or plan.trials < 1:
        return []
    lines = [f"## Tuning on {plan.tune_dataset}", "",
             f"{plan.trials} trials per model, seed {plan.tune_seed}, valid split only: the first trial is the "
             f"published recipe, the others are Optuna's over the learning rate, the weight decay and every dropout "
             f"of the model (a trial whose best valid NDCG@10 falls under the median of the finished trials after "
             f"{plan.prune_warmup} epochs is pruned). The best trial's settings are used on every dataset where the "
             f"recipe has no settings of its own.", "",
             "| model | trials (pruned) | recipe's valid NDCG@10 | best valid NDCG@10 | best settings | minutes |",
             "| --- | ---: | ---: | ---: | --- | ---: |"]
    for m in plan.models:
        saved = read_record(tuned_path(out, plan, m))
        if saved is None:
            lines.append(f"| {m} | 0 | | | pending | |")
            continue
        ts = saved["trials"]
        recipe = next((t["value"] for t in ts if t.get("recipe")), float("nan"))
        top = max(ts, key=lambda t: t["value"])
        best = ", ".join(f"{k.split('.', 1)[1]} {_num(v)}" for k, v in top["params"].items())
        if top.get("recipe"):
            best = "the recipe"
        lines.append(f"| {m} | {len(ts)} ({sum(t['pruned'] for t in ts)}) | {recipe:.4f} | {top['value']:.4f} | "
                     f"{best} | {_minutes(sum(t['seconds'] for t in ts) / 60)} |")
    return lines + [""]


def _minutes(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def _num(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def recipes_section(plan: Plan) -> list[str]:
    lines = ["## Recipes and their sources", "",
             "Every cell: " + ", ".join(f"{k} {_num(v)}" for k, v in plan.protocol.items()) + ".", ""]
    for m, mp in plan.models.items():
        settings = ", ".join(f"{k.split('.', 1)[1]} {_num(v)}" for k, v in mp.recipe.items()) or "the defaults"
        lines.append(f"- **{m}**: {settings}.")
        for label, s in mp.per_dataset.items():
            lines.append(f"  On {label}: " + ", ".join(f"{k.split('.', 1)[1]} {_num(v)}" for k, v in s.items())
                         + " (no tuned settings there).")
        for k, src in mp.sources.items():
            lines.append(f"  {'Source' if k == '*' else k}: {src}")
    return lines + [""]


def headline_table(plan: Plan, per_dataset: dict[str, dict[str, list[dict]]]) -> str:
    """Test NDCG@10 (mean ± SD over seeds) per model and dataset, the best finished one per column in bold; a
    column's best is only marked once every model has a cell there (a partial column has no winner yet)."""
    labels = list(plan.datasets)
    lines = ["| model | " + " | ".join(labels) + " |", "| --- |" + " ---: |" * len(labels)]
    best = {label: winner(plan, per_dataset[label]) for label in labels}
    for m in plan.models:
        row = []
        for label in labels:
            rs = per_dataset[label][m]
            v = _ms([r["metrics"]["test"][KEY] for r in rs]) if rs else "pending"
            if rs and len(rs) < len(plan.seeds):
                v += f" ({len(rs)} seed)"
            row.append(f"**{v}**" if best.get(label) == m else v)
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_report(out: str, plan: Plan) -> str:
    lines = ["# The leaderboard", "",
             "Made from the records in this folder (`echorec bench accuracy --plan FOLDER/plan.yaml --out FOLDER` "
             "continues it). Test metrics at the best-valid epoch, mean ± SD over seeds; times are one thread per "
             "cell on the machine each record names.", ""]
    if plan.tune_dataset is None or plan.trials < 1:  # the plan may drop them for time; the table must say so
        lines += ["No tuning in this plan: every model trains with its published recipe (below)."
                  + ("" if plan.third_seed is not None else " No third seeds."), ""]
    per_dataset = {}
    for label in plan.datasets:
        recs = per_dataset[label] = dataset_records(out, plan, label)
        n = sum(len(v) for v in recs.values())
        lines += [f"## {label}", "", f"{n} finished cells.", ""]
        lines += leaderboard_table(plan, label, recs) + [""]
        lines += flagship_test(plan, recs)
        png = plot_time(out, plan, label, recs)
        if png:
            lines += ["", f"![{label}: valid NDCG@10 against time]({os.path.basename(png)})"]
        lines.append("")
    lines += modes_section(out, plan) + tuning_section(out, plan) + recipes_section(plan)
    atomic_write_text(os.path.join(out, "headline.md"), headline_table(plan, per_dataset))
    machines = sorted({rec.get("machine", "?") for _, rec in all_records(out)})
    if machines:
        lines += ["Machines: " + "; ".join(machines) + ".", ""]
    text = "\n".join(lines)
    atomic_write_text(os.path.join(out, "results.md"), text)
    return text
