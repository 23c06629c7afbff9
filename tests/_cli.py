"""The one in-process CLI runner of the test suite: ``probprune.cli.main`` always leaves through SystemExit."""
from probprune.cli import main


def run_cli(capsys, argv) -> tuple[int, str, str]:
    """Run ``probprune ARGV`` in-process; return (exit code, stdout, stderr)."""
    code = 0
    try:
        main(list(argv))
    except SystemExit as e:
        code = 0 if e.code is None else e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err
