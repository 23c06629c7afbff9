"""The ``probprune`` command line. Each command group lives in its own module and registers on ``app``.

Errors (docs/cli.md): every failure, usage errors included (no command, a missing or misspelt option, a bad value),
prints exactly one line ``error: ...`` on stderr and exits with status 2; with ``--json`` a JSON error object
``{"schema": "probprune.error/1", "error": ..., "command": ...}`` is printed on stdout as well. An unexpected
exception prints ``error: internal error: <type>: <message>`` (exit 2); ``PROBPRUNE_DEBUG=1`` re-raises it with
its traceback. Ctrl-C exits with status 130 and one line saying that finished work is kept.
"""
from __future__ import annotations

import json
import os
import sys

import typer

from probprune.cli.app import app  # noqa: E402

# importing the command modules registers their commands on ``app``
from probprune.cli import bounds_cmds, prune_cmds, mc_cmds, lottery_cmds, experiment_cmds  # noqa: E402,F401


def _click_exception_types() -> tuple[type, ...]:
    """ClickException of click and of typer's vendored copy (whichever are installed)."""
    types = []
    for mod in ("typer._click.exceptions", "click.exceptions"):
        try:
            types.append(__import__(mod, fromlist=["ClickException"]).ClickException)
        except (ImportError, AttributeError):
            pass
    return tuple(types)


def _is_click_exception(exc: BaseException) -> bool:
    return isinstance(exc, _click_exception_types()) or any(
        c.__name__ == "ClickException" and "click" in c.__module__ for c in type(exc).__mro__)


def _one_line(s: str) -> str:
    return " ".join(str(s).split())


def _usage_message(exc) -> str:
    if type(exc).__name__ == "NoArgsIsHelpError":
        ctx = getattr(exc, "ctx", None)
        cmds = []
        if ctx is not None and hasattr(ctx.command, "list_commands"):
            cmds = [c for c in ctx.command.list_commands(ctx)]
        where = ctx.command_path if ctx is not None else "probprune"
        return f"missing command for `{where}`; one of: {', '.join(cmds)} (see `{where} --help`)"
    msg = _one_line(exc.format_message())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and type(exc).__name__ != "FileError":
        msg += f" (see `{ctx.command_path} --help`)"
    return msg


def _json_requested(argv: list[str]) -> bool:
    args = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in args


def _fail(msg: str, argv: list[str]) -> None:
    msg = _one_line(msg) or "failed"
    if _json_requested(argv):
        words = []
        for a in argv:  # the command words: everything before the first option
            if a.startswith("-"):
                break
            words.append(a)
        cmd = " ".join(["probprune", *words])[:200]
        typer.echo(json.dumps({"schema": "probprune.error/1", "error": msg, "command": cmd}))
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and turn every failure into one ``error:`` line and exit status 2.

    As the console script (``argv`` None), an interrupted command (status 130) leaves through ``os._exit`` after
    flushing stdout/stderr: finished work is already on disk (atomic writes) and worker processes are stopped, and
    the interpreter's teardown of torch and friends took 1-2 s on a loaded machine."""
    try:
        _main(argv)
    except SystemExit as exc:
        if argv is None and exc.code == 130:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(130)
        raise


def _main(argv: list[str] | None) -> None:
    from probprune.core.threads import limit_threads
    from probprune.core.errors import ProbPruneError

    limit_threads()  # one BLAS/OpenMP/torch thread unless the user set OMP_NUM_THREADS etc. (probprune/core/threads.py)

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = app(args=args, prog_name="probprune", standalone_mode=False)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("interrupted: finished work is saved; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted", args)
    except ProbPruneError as exc:
        _fail(str(exc) or type(exc).__name__, args)
    except OSError as exc:  # missing/unwritable files, folders in the way, a full disk
        if exc.strerror and exc.filename:
            _fail(f"{exc.strerror}: {exc.filename}", args)
        _fail(str(exc) or type(exc).__name__, args)
    except Exception as exc:
        if _is_click_exception(exc):
            _fail(_usage_message(exc), args)
        if os.environ.get("PROBPRUNE_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {str(exc)[:300]} (set PROBPRUNE_DEBUG=1 for the traceback)",
              args)
    if rv == 130:  # typer turns a KeyboardInterrupt inside a command into a returned Exit(130)
        print("interrupted: finished work is saved; run the same command again to resume", file=sys.stderr)
    # like a console script: always leave through SystemExit (a command may return an int exit code)
    sys.exit(rv if isinstance(rv, int) else 0)
