"""The docs as a contract (issue 15): every relative link and #anchor in README.md, docs/ and printables/README.md
resolves; every `patchlab ...` command they show exists with the options shown; the README stays an entry point
(≤ 12 KB); its Python example runs and prints what it says."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted([README, REPO / "printables" / "README.md", *(REPO / "docs").rglob("*.md")])
README_LIMIT = 12 * 1024

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"(?<!\\)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans, where links are links."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip())
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)      # a link in a heading keeps its text
    text = re.sub(r"[*_]{1,3}([^*_]+)[*_]{1,3}", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text.lower())                  # \w keeps letters of any script, digits, _
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every heading's anchor in a markdown file, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if fenced or not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return frozenset(out)


def links(path: Path) -> list[str]:
    return LINK.findall(_prose(path.read_text(encoding="utf-8")))


def test_slug_follows_githubs_rules():
    assert slug("Measured: top-1 / top-5 on the shared sample") == "measured-top-1--top-5-on-the-shared-sample"
    assert slug("Benchmark: EOT patch optimisation throughput against IBM ART 1.20") == \
        "benchmark-eot-patch-optimisation-throughput-against-ibm-art-120"
    assert slug("The EOT distribution (`patchlab.eot`)") == "the-eot-distribution-patchlabeot"
    assert slug("C&W-L2: time to the success rate") == "cw-l2-time-to-the-success-rate"
    assert slug("Evaluation (print preset, seed 1234)") == "evaluation-print-preset-seed-1234"


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ... are not checked offline
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest} does not exist")
            continue
        if not dest.is_relative_to(REPO):
            broken.append(f"{target}: points outside the repository")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}:\n  " + "\n  ".join(broken)


def test_the_link_checker_sees_links_and_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Results: top-1 / top-5\n\n## Notes\n\n## Notes\n\nSee [a](other.md#x) and ![b](fig.png), "
                    "not `[c](code.md)`.\n\n```bash\n# [d](fenced.md)\n```\n", encoding="utf-8")
    assert links(page) == ["other.md#x", "fig.png"]
    assert anchors(page) == {"results-top-1--top-5", "notes", "notes-1"}


# -- the commands the docs show ----------------------------------------------------------------------------------------
def code_blocks(page: Path, *langs: str) -> list[str]:
    return [body for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)
            if lang in langs]


def commands(page: Path) -> list[list[str]]:
    """The words after `patchlab` of every invocation in a page's shell blocks, including the ones after `&&`, in
    `.venv/bin/patchlab ...` and inside `torchrun ... -m patchlab ...`."""
    found = []
    for block in code_blocks(page, "bash", "sh", ""):
        for line in block.replace("\\\n", " ").splitlines():
            if line.lstrip().startswith("#"):
                continue
            for part in re.split(r"&&|\|\||;|\|", line.split(" #", 1)[0]):
                words = shlex.split(part)
                at = [i for i, w in enumerate(words) if w == "patchlab" or w.endswith("/patchlab")]
                if at:
                    found.append(words[at[0] + 1:])
    return found


SHOWN = [(page, words) for page in DOCS for words in commands(page)]


@cache
def _cli():
    """The `patchlab` command tree (typer vendors its own click: groups are told apart by their `commands`)."""
    from typer.main import get_command

    from patchlab.cli import app

    return get_command(app)


def _is_group(command) -> bool:
    return hasattr(command, "commands")


def _command_path(words: list[str]) -> list[str]:
    """The leading words that name a command (groups and subcommands), e.g. ['patch', 'eval']."""
    path, command = [], _cli()
    for word in words:
        if not _is_group(command) or word.startswith("-") or word not in command.commands:
            break
        path.append(word)
        command = command.commands[word]
    return path


def test_readme_shows_commands():
    paths = [" ".join(_command_path(words)) for words in commands(README)]
    assert {"patch train", "patch eval", "print", "photo-eval", "camera"} <= set(paths), paths
    assert len(SHOWN) > 50  # every page's blocks were read


@pytest.mark.parametrize("page,words", SHOWN, ids=lambda v: str(v.relative_to(REPO)) if isinstance(v, Path)
                         else " ".join(v[:2]))
def test_every_command_shown_exists(page, words):
    """`patchlab <group> <cmd> --help` exits 0, and the options shown are that command's options."""
    from typer.testing import CliRunner

    from patchlab.cli import app

    shown_as = f"{page.relative_to(REPO)}: patchlab {' '.join(words)}"
    path = _command_path(words)
    assert path, f"{shown_as}: no such command"
    command = _cli()
    for word in path:
        command = command.commands[word]
    # a group runs on its own only when it says so (`patchlab bench` runs every benchmark)
    assert not _is_group(command) or command.invoke_without_command, \
        f"{shown_as}: no such subcommand of patchlab {' '.join(path)}"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, f"patchlab {' '.join(path)} --help: {result.output}"
    known = {opt for param in command.params if param.param_type_name == "option"
             for opt in param.opts + param.secondary_opts}
    shown = {w.split("=", 1)[0] for w in words[len(path):] if w.startswith("--")}
    assert shown <= known, f"{shown_as}: unknown options {sorted(shown - known)}"


def test_an_unknown_command_would_be_caught():
    assert _command_path(["no-such-command", "--help"]) == []
    assert _command_path(["patch", "nope"]) == ["patch"]


# -- size and the Python example ----------------------------------------------------------------------------------------
def test_readme_is_an_entry_point():
    size = README.stat().st_size
    assert size <= README_LIMIT, f"README.md is {size} bytes; the limit is {README_LIMIT}: move detail to docs/"


def test_readme_python_example_runs_and_prints_what_it_says():
    [example, *_] = code_blocks(README, "python")
    expected = re.search(r"^# prints: (.*)$", example, re.M)
    assert expected, "the README's Python example should end with '# prints: ...'"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, "README.md", "exec"), {"__name__": "readme_example"})
    assert out.getvalue().strip() == expected.group(1).strip()
