"""Benchmark targets as checks that can fail, and the interleaved best-of-N timing they are judged on.

    samples = interleaved({"competitor": f, "ours": g, "limit": h}, rounds=5)     # patchlab.bench.timing
    targets = [Target("PGD step / torchattacks", ours / theirs, "<=", 0.7, "x"), ...]
    print(format_targets(targets)); check_targets(targets)                          # table first, then assert

Every `Target` checked in a process is also kept in `RESULTS`, so a test runner can print one table of all of them
at the end (tests/benchmarks/conftest.py does, for `make bench`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RESULTS: list["Target"] = []


@dataclass
class Target:
    """`value` compared with `bound`: op is '<=', '>=' or 'within' (bound = (low, high))."""

    name: str
    value: float | None
    op: str
    bound: float | tuple[float, float]
    unit: str = ""
    note: str = ""

    @property
    def met(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        if self.op == "<=":
            return self.value <= self.bound
        if self.op == ">=":
            return self.value >= self.bound
        if self.op == "within":
            low, high = self.bound
            return low <= self.value <= high
        raise ValueError(f"unknown op {self.op!r}")

    def describe_bound(self) -> str:
        if self.op == "within":
            return f"in [{self.bound[0]:g}, {self.bound[1]:g}]{self.unit and ' ' + self.unit}"
        return f"{self.op} {self.bound:g}{self.unit and ' ' + self.unit}"

    def row(self) -> str:
        value = "n/a" if self.value is None else f"{self.value:.3g}"
        return (f"| {self.name} | {value}{self.unit and ' ' + self.unit} | {self.describe_bound()} | "
                f"{'met' if self.met else '**MISSED**'} | {self.note} |")


def format_targets(targets: list[Target], record: bool = True) -> str:
    if record:
        RESULTS.extend(targets)
    rows = ["| target | measured | required | status | note |", "|---|---|---|---|---|"]
    return "\n".join(rows + [t.row() for t in targets])


def check_targets(targets: list[Target]) -> None:
    """Fail with every missed target named (the table has been printed before)."""
    missed = [t for t in targets if not t.met]
    if missed:
        raise AssertionError("missed: " + "; ".join(
            f"{t.name} = {'n/a' if t.value is None else f'{t.value:.3g}'} (required {t.describe_bound()})"
            for t in missed))
