"""Copy the committed result tables into README.md (between markers), so the README shows exactly what
the benchmark scripts wrote. Run after the benchmarks: python benchmarks/fill_readme.py"""

import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, "..", "README.md")
SECTIONS = {  # marker -> result files, in order
    "VS_RECBOLE": ["vs_recbole.md", "vs_recbole_seeds.md"],
    "SCAN": ["scan_speed.md"],
    "MAIN": ["main.md"],
    "ABLATION": ["ablation.md"],
    "SERVE": ["serve_load.md"],
}


def body(files):
    parts = []
    for f in files:
        path = os.path.join(HERE, "results", f)
        if os.path.exists(path):
            text = open(path).read().strip()
            text = re.sub(r"^# .*\n", "", text).strip()  # the section heading is in the README already
            parts.append(text)
    if "scan_speed.md" in files and os.path.exists(os.path.join(HERE, "results", "scan_speed.png")):
        parts.append("![scan speed](benchmarks/results/scan_speed.png)")
    return "\n\n".join(parts) or "(not measured yet)"


def main():
    text = open(README).read()
    for key, files in SECTIONS.items():
        block = f"<!-- {key} -->\n{body(files)}\n<!-- /{key} -->"
        pattern = re.compile(rf"<!-- {key} -->.*?<!-- /{key} -->", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _: block, text)
        else:
            text = text.replace(f"RESULTS_{key}", block)
    open(README, "w").write(text)


if __name__ == "__main__":
    main()
