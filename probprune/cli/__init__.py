"""The ``probprune`` command line. Each command group lives in its own module and registers on ``app``.

Errors: any :class:`~probprune.errors.ProbPruneError` (a ValueError), a missing file or a corrupt model file
is printed as one line ``error: ...`` on stderr with exit code 2; never a traceback.
"""
from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="probprune",
    help="Explicit-constant pruning bounds, pruning methods, Monte Carlo checks and subset-sum lottery tickets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# importing the command modules registers their commands on ``app``
from . import bounds_cmds, prune_cmds, mc_cmds, lottery_cmds, experiment_cmds  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    from ..errors import ProbPruneError

    try:
        rv = app(args=argv, standalone_mode=False)
    except (ProbPruneError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        typer.echo(f"error: {msg}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished work is saved; run the same command again to resume", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    # like a console script: always leave through SystemExit (a command may return an int exit code)
    sys.exit(rv if isinstance(rv, int) else 0)
