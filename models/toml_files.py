"""What the TOML files applied from the command line (prices, budgets, allocation)
share: finding the line a key is on, and refusing a file with every problem listed
as ``FILE:LINE: problem; fix``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

__all__ = ["FileProblem", "key_line", "refused"]

E = TypeVar("E", bound=Exception)


@dataclass(frozen=True)
class FileProblem:
    """One reason a file is refused."""

    file: str
    line: int
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.problem}; {self.fix}"


class _Located(Protocol):
    @property
    def line(self) -> int: ...


def key_line(lines: Sequence[str], key: str, start: int, end: int, default: int = 1) -> int:
    """The 1-based line of ``key = ...`` (or ``[key...``) within lines[start:end]."""
    pattern = re.compile(rf"""^\s*(\[+\s*)?(["']?){re.escape(key)}\2\s*[=\].]""")
    for i in range(start, min(end, len(lines))):
        if pattern.match(lines[i]):
            return i + 1
    return default


def refused(error: type[E], file: str, problems: Sequence[_Located]) -> E:
    """``error`` saying nothing of ``file`` was applied, with its problems in line
    order (each shown by its ``str``), also kept as ``error.problems``."""
    ordered = sorted(problems, key=lambda p: p.line)
    n = len(ordered)
    exc = error(f"{file}: refused, nothing was applied ({n} problem{'s' if n != 1 else ''}):\n"
                + "\n".join(map(str, ordered)))
    exc.problems = ordered  # type: ignore[attr-defined]
    return exc
