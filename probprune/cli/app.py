"""The ``probprune`` Typer application object; every command module registers on it (``from probprune.cli.app import
app``), and ``probprune.cli`` imports the command modules, so the package has no import cycle."""
from __future__ import annotations

import typer

app = typer.Typer(
    name="probprune",
    help="Explicit-constant pruning bounds, pruning methods, Monte Carlo checks and subset-sum lottery tickets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool):
    if value:
        from probprune import __version__

        typer.echo(f"probprune {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version_callback,
                                 help="print the version and exit"),
):
    """Explicit-constant pruning bounds, pruning methods, Monte Carlo checks and subset-sum lottery tickets."""


def _hide_flag_metavar() -> None:
    """typer's rich help shows ``--json <bool>`` for on/off flags, which reads as if a value were expected
    (``--json true`` then fails): show flags without a type column (``--json / --no-json``)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover
        return
    orig = getattr(TyperOption, "display_type_rich", None)
    if orig is None or getattr(orig, "_probprune", False):
        return

    def display_type_rich(self, ctx):
        if getattr(self, "is_flag", False) and self.metavar is None:
            return ""
        return orig(self, ctx)

    display_type_rich._probprune = True
    TyperOption.display_type_rich = display_type_rich


_hide_flag_metavar()
