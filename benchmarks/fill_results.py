"""Copy the committed result tables into the docs' Results page (docs/results.md, between markers), and the
leaderboard's headline table into the README, so both show exactly what the benchmark scripts wrote. Run after
the benchmarks: python benchmarks/fill_results.py (`--check`: exit 1 when either is out of date; the test suite
runs that)."""

import glob
import os
import re
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(HERE, "..", "docs", "results.md")
README = os.path.join(HERE, "..", "README.md")
README_SECTIONS = {"HEADLINE": "leaderboard/headline.md"}  # marker -> the file copied there as it is
SECTIONS = {  # marker -> result files, in order
    "VS_RECBOLE": ["vs_recbole.md", "vs_recbole_seeds.md"],
    "SCAN": ["scan_speed.md"],
    "MAIN": ["main.md"],
    "ABLATION": ["ablation.md"],
    "READOUT": ["readout/results.md", "readout/paired.md"],
    "LONG_RANGE": ["long_range.md", "long_range_notes.md"],
    "SERVE": ["serve_load.md", "serve_load_before_after_42.md"],
    "LEADERBOARD": ["leaderboard/results.md"],
    "PREDICT": ["predict_scale.md", "onnx_speed.md"],
    "WARM": ["warm_start.md", "warm_start_lr3e-4.md"],
    "REFACTOR": ["epoch_before_after_40.md", "kernel_choices.md"],
    "SCALE": ["scale_logs.md", "read_scale.md"],
    "TTQ": ["time_to_quality/results.md", "time_to_quality/notes.md"],
    "ZOO": ["vs_recbole_zoo.md"],
    "LASTFM": ["lastfm_vs_bsarec_log.md"],
    "ACCURACY": ["accuracy/results.md"],
    "SPEED": ["speed/speed.md"],
}
# Studies run into benchmarks/runs/<name> (weights and all, not committed); their tables, plots and
# protocol are copied into benchmarks/results/<name>/ before the page is filled.
STUDIES = {"accuracy": ["results.md", "results.csv", "study.json", "curves_*.png"],
           "speed": ["speed.md", "speed.csv", "speed_*.png"]}
IMAGES = {"leaderboard/results.md": "leaderboard/time_*.png",
          "accuracy/results.md": "accuracy/curves_*.png", "speed/speed.md": "speed/speed_*.png",
          "scale_logs.md": "scale_logs.png"}


def body(files):
    parts = []
    for f in files:
        path = os.path.join(HERE, "results", f)
        if os.path.exists(path):
            text = open(path).read().strip()
            text = re.sub(r"^# .*\n", "", text).strip()  # the section heading is in the page already
            text = re.sub(r"^!\[.*\]\((?!benchmarks/).*\)\n?", "", text, flags=re.M)  # relative images: IMAGES adds them
            text = re.sub(r"^## ", "### ", text, flags=re.M)  # a file's sections sit under the page's ##
            parts.append(text)
    if "scan_speed.md" in files and os.path.exists(os.path.join(HERE, "results", "scan_speed.png")):
        parts.append("![scan speed](benchmarks/results/scan_speed.png)")
    for f in files:
        if f in IMAGES:
            imgs = sorted(glob.glob(os.path.join(HERE, "results", IMAGES[f])))
            parts.append(" ".join(f"![{os.path.basename(i)}]"
                                  f"(benchmarks/results/{os.path.relpath(i, os.path.join(HERE, 'results'))})"
                                  for i in imgs))
    return "\n\n".join(parts) or "(not measured yet)"


def copy_studies():
    for name, patterns in STUDIES.items():
        src = os.path.join(HERE, "runs", name)
        if not os.path.isdir(src):
            continue
        dst = os.path.join(HERE, "results", name)
        os.makedirs(dst, exist_ok=True)
        for pat in patterns:
            for f in glob.glob(os.path.join(src, pat)):
                shutil.copy2(f, dst)


def put(text: str, key: str, content: str) -> str:
    """`content` between the <!-- KEY --> markers (or in place of a bare RESULTS_KEY)."""
    block = f"<!-- {key} -->\n{content}\n<!-- /{key} -->"
    pattern = re.compile(rf"<!-- {key} -->.*?<!-- /{key} -->", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.replace(f"RESULTS_{key}", block)


def filled(text: str) -> str:
    for key, files in SECTIONS.items():
        text = put(text, key, body(files))
    return text


def filled_readme(text: str) -> str:
    for key, f in README_SECTIONS.items():
        path = os.path.join(HERE, "results", f)
        text = put(text, key, open(path).read().strip() if os.path.exists(path) else "(not measured yet)")
    return text


def main() -> int:
    import sys

    pages = ((PAGE, filled), (README, filled_readme))
    if "--check" in sys.argv:
        texts = {p: open(p).read() for p, _ in pages}
        stale = [os.path.relpath(p, os.path.join(HERE, "..")) for p, fill in pages if fill(texts[p]) != texts[p]]
        if stale:
            print(f"{', '.join(stale)} out of date: run python benchmarks/fill_results.py")
            return 1
        return 0
    copy_studies()
    for page, fill in pages:
        text = fill(open(page).read())
        with open(page, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
