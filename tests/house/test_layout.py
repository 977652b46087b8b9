"""The house rules that code can check (issue 15): one registry with suggestions, library errors that name
parameters (the CLI shows flags), titles for every attack, geometry and validators in one place each."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from patchlab.errors import PatchlabError
from patchlab.registry import Registry, check_known, did_you_mean

PACKAGE = Path(__file__).resolve().parents[2] / "patchlab"


def test_registry_registers_suggests_and_lists():
    things = Registry("defense")

    @things.register("jpeg", title="JPEG compression", aliases=("jpeg-compression",))
    class Jpeg:
        pass

    things.register("median", object(), title="Median filter")
    assert things.get("JPEG") is Jpeg and things.get("jpeg-compression") is Jpeg and things["jpeg"] is Jpeg
    assert list(things) == ["jpeg", "median"] and len(things) == 2 and "Jpeg-Compression" in things
    assert things.title("jpeg-compression") == "JPEG compression" and things.resolve(" Median ") == "median"
    with pytest.raises(PatchlabError, match=r"^unknown defense 'jpg'; did you mean 'jpeg'\? \(choose from jpeg, "
                                            r"median\)$"):
        things.get("jpg")
    with pytest.raises(PatchlabError, match=r"^unknown defense 'zzz' \(choose from jpeg, median\)$"):
        things.get("zzz")
    with pytest.raises(ValueError, match="registered twice"):
        things.register("JPEG", object())
    assert did_you_mean("rotaton", ["rotation", "tilt"]) == "; did you mean 'rotation'?"
    with pytest.raises(PatchlabError, match="unknown EOT setting 'tlit'; did you mean 'tilt'"):
        check_known({"tlit": 1, "tilt": 2}, ["tilt", "rotation"], "EOT setting")


def test_every_registry_serves_its_lookups():
    from patchlab.attacks import ATTACKS, make_attack
    from patchlab.attacks.demos import DEMOS
    from patchlab.eot import PRESETS, preset
    from patchlab.models import MODELS
    from patchlab.models.digits import DIGITS_MODELS, make_digits_model

    assert all(ATTACKS.title(n) not in ("attack", n) for n in ATTACKS), "every attack has a display title"
    assert type(make_attack("I-FGSM", None, eps=0.01)).__name__ == "BIM"
    for lookup, bad, hint in ((make_attack, "pgdd", "pgd"), (preset, "prnt", "print"),
                              (make_digits_model, "cn", "cnn"), (MODELS.get, "resnet5", "resnet50"),
                              (DEMOS.get, "pand", "panda")):
        with pytest.raises(PatchlabError, match=f"did you mean '{hint}'"):
            lookup(bad) if lookup is not make_attack else lookup(bad, None)
    assert list(PRESETS) == ["digital", "print", "webcam"]
    assert list(DIGITS_MODELS) == ["cnn", "mlp", "logreg", "dpcnn", "scatter", "strided"]


def _library_error_messages():
    """(file, line, text) of every string literal inside a `raise PatchlabError(...)` outside the CLI and the app."""
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(("cli/", "app/")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                    getattr(node.exc.func, "id", "") in ("PatchlabError", "OutputExists"):
                for part in ast.walk(node.exc):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        yield rel, node.lineno, part.value


def test_library_errors_name_parameters_not_flags():
    flags = [(f, n, t) for f, n, t in _library_error_messages() if re.search(r"(^|[\s(])--[a-z]", t)]
    assert not flags, f"library errors that name CLI flags (name the parameter, e.g. manifest=): {flags}"
    assert sum(1 for _ in _library_error_messages()) > 100  # the scan sees the library's errors


def test_cli_shows_the_flags(capsys):
    from patchlab.cli import main
    from patchlab.cli._flags import in_cli_words

    assert in_cli_words("or pass min_markers=3; pass manifest= and page=N (0-based); force=True replaces it") == \
        "or pass --min-markers 3; pass --manifest and --page N (0-based); --force replaces it"
    assert in_cli_words("drop kind=onnx; at least one models= is needed; x=1 in a=b.png") == \
        "drop --onnx; at least one --model is needed; x=1 in a=b.png"
    assert main(["camera", "--source", "nosuchfile.mp4", "--headless"]) == 2
    assert "patchlab: error: --source nosuchfile.mp4: no such file or folder" in capsys.readouterr().err


def test_one_of_each():
    """One progress type, one OpenCV import style, one quad area, validators in errors.py."""
    texts = {p.relative_to(PACKAGE).as_posix(): p.read_text() for p in PACKAGE.rglob("*.py")}
    assert [k for k, v in texts.items() if re.search(r"^ProgressFn = ", v, re.M)] == ["progress.py"]
    assert not [k for k, v in texts.items() if "def _cv2(" in v]
    assert [k for k, v in texts.items() if "def quad_area(" in v] == ["geometry.py"]
    for name in ("parse_fraction", "parse_eps", "positive_int", "positive_float", "check_unit_interval"):
        assert [k for k, v in texts.items() if f"def {name}(" in v] == ["errors.py"], name
