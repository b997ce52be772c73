"""Write the generated docs pages from the code: docs/cli.md (every command's flags, the settings tables built
from the config dataclasses) and the settings tables of docs/models.md (between its GENERATED markers).

    python docs/gen_reference.py          # rewrite them
    python docs/gen_reference.py --check  # exit 1 if they are out of date (the test suite runs this)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import re
import sys
import typing

HERE = os.path.dirname(os.path.abspath(__file__))


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def settings_table(cls) -> str:
    """A Markdown table of a config dataclass: flag, type, default, allowed values, what it does."""
    from echorec.fields import _range_text, _unwrap_optional, flag_fields

    fields = {f.name: f for f in dataclasses.fields(cls)}
    rows = ["| flag | type | default | allowed | what it does |", "| --- | --- | --- | --- | --- |"]
    for flag, name, tp, default in flag_fields(cls):
        m = fields[name].metadata or {}
        base, optional = _unwrap_optional(tp)
        tname = getattr(base, "__name__", None) or str(base).replace("typing.", "")
        if typing.get_origin(base) in (list, tuple):
            tname = f"list of {typing.get_args(base)[0].__name__}"
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        allowed = ", ".join(map(str, m["choices"])) if m.get("choices") else _range_text(m)
        rows.append(f"| `{flag}` | {tname}{' or none' if optional else ''} | `{shown}` | {_cell(allowed)} | "
                    f"{_cell(m.get('help', ''))} |")
    return "\n".join(rows)


def _help_of(argv: list[str]) -> str:
    from echorec.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        main(argv)
    return buf.getvalue().rstrip()


COMMANDS = [
    ("evaluate", ["evaluate", "--help"]),
    ("data info", ["data", "info", "--help"]),
    ("recommend", ["recommend", "--help"]),
    ("predict", ["predict", "--help"]),
    ("serve", ["serve", "--help"]),
    ("export", ["export", "--help"]),
    ("bench accuracy", ["bench", "accuracy", "--help"]),
    ("bench speed", ["bench", "speed", "--help"]),
    ("tune", ["tune", "--help"]),
]


def cli_page() -> str:
    from echorec.config import SECTIONS
    from echorec.models import model_names

    out = ["# CLI reference", "",
           "Generated from the code by `python docs/gen_reference.py`; every flag's text is its setting's own doc.",
           "Any setting can also come from a config file (`--config run.yaml`, see [Training](training.md)); flags win.",
           "", "## echorec", "", "```", _help_of(["--help"]), "```", "", "## echorec train", "",
           "`echorec train --model NAME --dataset DATA --out DIR [settings]`, plus `--config FILE`, `--print-config`, "
           "`--resume DIR`, `--overwrite` and `--allow-data-change`. The settings, by section:", ""]
    for sec, cls in SECTIONS:
        out += [f"### {sec} settings", "", settings_table(cls), ""]
    out += ["### model settings", "", "Each model's own settings are flags too once `--model` names it; they are "
            "listed per model on the [Models](models.md) page (" +
            ", ".join(f"[{m}](models.md#{m})" for m in model_names() if m in BUILTIN) + ")."]
    for title, argv in COMMANDS:
        out += ["", f"## echorec {title}", "", "```", _help_of(argv), "```"]
    return "\n".join(out) + "\n"


BUILTIN = ("echomamba4rec", "mamba4rec", "sasrec", "gru4rec", "narm", "bert4rec", "fmlprec", "bsarec")


def models_page(text: str) -> str:
    """docs/models.md with each `<!-- SETTINGS name -->...<!-- /SETTINGS -->` block regenerated."""
    from echorec.models import get_model_class

    def fill(match):
        name = match.group(1)
        return f"<!-- SETTINGS {name} -->\n{settings_table(get_model_class(name).Config)}\n<!-- /SETTINGS -->"

    return re.sub(r"<!-- SETTINGS (\w+) -->.*?<!-- /SETTINGS -->", fill, text, flags=re.S)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(HERE, "..", "src"))
    models_path = os.path.join(HERE, "models.md")
    want = {os.path.join(HERE, "cli.md"): cli_page(), models_path: models_page(open(models_path).read())}
    stale = [p for p, t in want.items() if not os.path.exists(p) or open(p).read() != t]
    if args.check:
        for p in stale:
            print(f"{os.path.relpath(p)} is out of date: run python docs/gen_reference.py")
        return 1 if stale else 0
    for p in stale:
        with open(p, "w") as f:
            f.write(want[p])
        print(f"wrote {os.path.relpath(p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
