"""The library names its parameters as Python keywords (`manifest=`, `min_markers=3`, `force=True`); the CLI says
the same with its flags (`--manifest`, `--min-markers 3`, `--force`). One rule, applied where the CLI prints a
PatchlabError, plus the few flags that are not spelled like their parameter."""

from __future__ import annotations

import re

# parameter (or parameter=value) -> flag, where the flag is not `--` + the parameter with '-' for '_'
FLAG_FOR = {
    "models": "--model",        # PatchConfig.models: `--model` repeated
    "kind=onnx": "--onnx",      # load_backend(kind="onnx"): `patchlab camera --onnx`
    "kind=eager": "--eager",
}
# the parameters library errors may name: a `word=` that is not one of them is left as it is (file names, data)
PARAMETERS = {
    "address", "anchor", "append", "arch", "area", "areas", "cell_mm", "device", "dpi", "executor", "force", "images",
    "kind", "manifest", "min_markers", "model", "models", "out", "page", "patch", "resume", "size_mm", "source", "steps",
    "workers",
}
_KEYWORD = re.compile(r"(?<![\w.-])([a-z][a-z0-9_]*)=(True\b|[\w.:/-]*)")


def flag(parameter: str, value: str = "") -> str:
    """`--min-markers 3` for ("min_markers", "3"); `--force` for ("force", "True")."""
    if f"{parameter}={value}" in FLAG_FOR:
        return FLAG_FOR[f"{parameter}={value}"]
    name = FLAG_FOR.get(parameter, "--" + parameter.replace("_", "-"))
    return name if value in ("", "True") else f"{name} {value}"


def in_cli_words(message: str) -> str:
    """A library error message with its parameters as CLI flags."""
    return _KEYWORD.sub(lambda m: flag(m[1], m[2]) if m[1] in PARAMETERS else m[0], message)
