"""One exception type for every user-facing failure: the CLI prints its message as one line."""


class PatchlabError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def check_unit_interval(name: str, value: float, allow_zero: bool = True) -> float:
    """Validate a value in [0, 1] (ε, fractions); raise a one-line error otherwise."""
    import math

    try:
        value = float(value)
    except (TypeError, ValueError):
        raise PatchlabError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(value) or value < 0 or value > 1 or (value == 0 and not allow_zero):
        bound = "[0, 1]" if allow_zero else "(0, 1]"
        raise PatchlabError(f"{name} must lie in {bound} (images are scaled to [0, 1]), got {value}")
    return value


def parse_fraction(text: str | float, name: str = "eps") -> float:
    """Parse '8/255', '0.03' or a float into a value in [0, 1]."""
    if isinstance(text, (int, float)):
        return check_unit_interval(name, text)
    s = str(text).strip()
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            value = float(num) / float(den)
        else:
            value = float(s)
    except (ValueError, ZeroDivisionError):
        raise PatchlabError(f"{name} must be a number such as 0.03 or 8/255, got {text!r}") from None
    return check_unit_interval(name, value)
