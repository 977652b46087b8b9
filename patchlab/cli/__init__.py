"""The `patchlab` command: a thin typer layer. Each module in this package registers one command group."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import typer

from patchlab.cli._flags import in_cli_words
from patchlab.errors import PatchlabError

app = typer.Typer(help="patchlab: adversarial patches, printables, live camera and attacks.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")) -> None:
    if debug:
        os.environ["PATCHLAB_DEBUG"] = "1"


_root_app = app
for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    _module = importlib.import_module(f"{__name__}.{_mod}")
    if hasattr(_module, "register"):
        _module.register(_root_app)
app = _root_app  # a submodule named like a global must not shadow it


def main(argv: list[str] | None = None) -> int:
    """Run the CLI: user errors become one line on stderr and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("PATCHLAB_DEBUG") == "1"
    try:
        code = app(args=args, prog_name="patchlab", standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool):  # typer.Exit(n) comes back as n here
            return code
    except PatchlabError as exc:
        if debug:
            raise
        print(f"patchlab: error: {in_cli_words(str(exc))}", file=sys.stderr)  # parameters named as flags
        return 2
    except KeyboardInterrupt:
        print("patchlab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # click usage errors and unexpected failures: still one line
        import click

        if isinstance(exc, click.exceptions.Exit):
            return exc.exit_code
        if isinstance(exc, click.ClickException):
            print(f"patchlab: error: {exc.format_message()}", file=sys.stderr)
            return 2
        if isinstance(exc, click.exceptions.Abort):
            print("patchlab: aborted", file=sys.stderr)
            return 130
        if debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"patchlab: error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)", file=sys.stderr)
        return 2
    return 0


def run() -> None:
    sys.exit(main())
