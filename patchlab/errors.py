"""One exception type for every user-facing failure, and the validators that raise it.

Messages are one line and name the library's parameters as Python keywords (`manifest=`, `min_markers=3`); the
CLI shows the same message with its flags instead (`cli_message()`, see patchlab/cli/_flags.py). Validators take
the `name` to report, so a CLI that checks a flag itself may pass the flag ("--eps").
"""

from __future__ import annotations

import math


class PatchlabError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    def cli_message(self) -> str:
        """The message as the command line says it: parameters (`manifest=`) become flags (`--manifest`)."""
        from patchlab.cli._flags import in_cli_words

        return in_cli_words(str(self))


def check_unit_interval(name: str, value: float, allow_zero: bool = True) -> float:
    """Validate a value in [0, 1] (ε, fractions); raise a one-line error otherwise."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise PatchlabError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(value) or value < 0 or value > 1 or (value == 0 and not allow_zero):
        bound = "[0, 1]" if allow_zero else "(0, 1]"
        raise PatchlabError(f"{name} must lie in {bound} (images are scaled to [0, 1]), got {value}")
    return value


def _number(text: str | float, name: str, example: str) -> float:
    """A float from a number or text such as '0.5' or '8/255'."""
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    try:
        num, _, den = s.partition("/")
        return float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise PatchlabError(f"{name} must be a number such as {example}, got {text!r}") from None


def parse_fraction(text: str | float, name: str = "eps") -> float:
    """Parse '8/255', '0.03' or a float into a value in [0, 1]."""
    if isinstance(text, (int, float)):
        return check_unit_interval(name, text)
    return check_unit_interval(name, _number(text, name, "0.03 or 8/255"))


def parse_eps(value: float | str, norm: str = "linf", name: str = "eps") -> float:
    """ε as a float: '8/255' or 0.0314. Linf ε must lie in [0, 1]; an L2 radius may exceed 1 but not be < 0."""
    if norm == "linf":
        return parse_fraction(value, name)
    if isinstance(value, str):
        v = _number(value, name, "0.5 or 128/255")
    else:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise PatchlabError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(v) or math.isinf(v) or v < 0:
        raise PatchlabError(f"{name} must be a finite L2 radius >= 0, got {value}")
    return v


def parse_eps_list(values: str | list) -> list[float]:
    """'2,4,8,16' (in 1/255 units when >= 1) or '8/255,0.03' -> fractions in [0, 1]."""
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    out = []
    for v in values:
        s = str(v).strip()
        try:
            num = float(s)
            out.append(parse_fraction(num / 255 if num >= 1 else num, "eps"))
        except ValueError:
            out.append(parse_fraction(s, "eps"))
    if not out:
        raise PatchlabError("give at least one eps")
    return out


def positive_int(value, name: str, minimum: int = 1) -> int:
    """An integer >= `minimum` (a float such as 3.0 is accepted, 3.5 is not)."""
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise PatchlabError(f"{name} must be an integer, got {value!r}") from None
    if v < minimum or v != float(value):
        raise PatchlabError(f"{name} must be an integer >= {minimum}, got {value}")
    return v


def positive_float(value, name: str, allow_zero: bool = False) -> float:
    """A finite number > 0 (>= 0 with `allow_zero`)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PatchlabError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(v) or math.isinf(v) or v < 0 or (v == 0 and not allow_zero):
        raise PatchlabError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value}")
    return v
