"""The product surface: README.md's size and commands, the generated docs pages being current, and the docs
site building with `mkdocs build --strict`."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from echorec.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def readme_commands() -> list[str]:
    """Every `echorec ...` command in README.md's bash blocks (line continuations joined, the venv prefix and
    trailing comments dropped)."""
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            for part in line.split("&&"):
                part = part.split(" #")[0].strip()
                part = re.sub(r"^\.venv/bin/", "", part)
                if part.startswith("echorec "):
                    cmds.append(part)
    return cmds


def test_readme_is_short_and_in_order():
    assert len(README.encode()) <= 15_000
    heads = [h for h in re.findall(r"^## (.+)$", README, re.M)]
    assert heads[:4] == ["Two commands", "What the first command prints", "Models", "A short tour"]
    assert heads[-2:] == ["Layout", "Documentation"]
    assert not re.search(r"\b[0-9a-f]{7,40}\b(?<!\d{7})", re.sub(r"```.*?```", "", README, flags=re.S)), \
        "a commit hash in the README's prose"


def test_readme_has_the_two_commands():
    first, second = re.findall(r"```bash\n(python3 -m venv .*?)\n```", README, re.S)[:2]
    for cmd in (first, second):
        assert "python3 -m venv .venv" in cmd and "download.pytorch.org/whl/cpu" in cmd
    assert "echorec train" in first and "pytest" in second


@pytest.mark.parametrize("cmd", readme_commands())
def test_every_readme_command_parses(cmd, capsys, tmp_path, monkeypatch):
    argv = shlex.split(cmd)[1:]
    monkeypatch.chdir(tmp_path)
    if "--config" in argv:  # a file an earlier command would have written
        path = tmp_path / argv[argv.index("--config") + 1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"model": "sasrec", "data": {"max_len": 20}}')
    if "--init-from" in argv:  # a run folder an earlier command would have written
        path = tmp_path / argv[argv.index("--init-from") + 1]
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text('{"model": "sasrec", "data": {"max_len": 20}}')
    if argv[0] == "train":  # everything checked, nothing read or trained
        argv.append("--print-config")
        assert main(argv) == 0, capsys.readouterr().err
        return
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0, capsys.readouterr().err


def test_generated_pages_are_current():
    for script in ("docs/gen_reference.py", "benchmarks/fill_results.py"):
        p = subprocess.run([sys.executable, os.path.join(ROOT, script), "--check"], capture_output=True, text=True,
                           cwd=ROOT, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr


def test_docs_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    mkdocs = shutil.which("mkdocs") or os.path.join(os.path.dirname(sys.executable), "mkdocs")
    p = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], capture_output=True, text=True,
                       cwd=ROOT, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    api = open(tmp_path / "site" / "api" / "index.html", encoding="utf-8").read()
    assert "load_run" in api and "SequentialRecommender" in api  # mkdocstrings rendered the docstrings
    for page in ("install", "data", "models", "training", "studies", "results", "serving", "production", "scaling",
                 "cli"):
        assert os.path.exists(tmp_path / "site" / page / "index.html"), page


HELP_COMMANDS = [["train", "--help"], ["train", "--help", "--model", "echomamba4rec"], ["evaluate", "--help"],
                 ["data", "info", "--help"], ["recommend", "--help"], ["predict", "--help"], ["serve", "--help"],
                 ["export", "--help"],
                 ["bench", "accuracy", "--help"], ["bench", "speed", "--help"], ["tune", "--help"]]


@pytest.mark.parametrize("argv", HELP_COMMANDS, ids=[" ".join(a[:2]) for a in HELP_COMMANDS])
def test_every_flag_has_help(argv, monkeypatch, capsys):
    import argparse

    missing, real = [], argparse.ArgumentParser.parse_known_args

    def spy(self, *a, **k):
        if self.add_help:  # the help-less pre-parsers that find --model/--config first are never shown
            missing.extend(f"{self.prog} {act.option_strings or act.dest}" for act in self._actions
                           if not act.help and not isinstance(act, argparse._HelpAction))
        return real(self, *a, **k)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", spy)
    with pytest.raises(SystemExit):
        main(argv)
    assert not missing, missing
    assert "default:" in capsys.readouterr().out
