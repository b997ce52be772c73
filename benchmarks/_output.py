"""What every table-printing benchmark script ends with: the table on stdout, and the same text in --out.

The file is replaced whole (echorec.fsio.atomic_write_text), so an interrupted run never leaves half a table
where a committed result was."""

from __future__ import annotations


def emit(text: str, out: str | None) -> None:
    from echorec.fsio import atomic_write_text

    print(text)
    if out:
        atomic_write_text(out, text + "\n")
