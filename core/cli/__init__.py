"""The ``pinnace`` command line. Only :func:`main` lives here, so ``pinnace --version``
answers without importing click; the commands are in :mod:`pinnace.cli.root`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; print engine errors as one line and exit with docker's codes."""
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-v"]):
        from pinnace import __version__

        print(f"pinnace version {__version__}")
        sys.exit(0)
    import click

    from pinnace.cli.root import cli
    from pinnace.errors import PinnaceError

    debug = "--debug" in args[: args.index("--")] if "--" in args else "--debug" in args
    try:
        code = cli.main(args, prog_name="pinnace", standalone_mode=False)
    except PinnaceError as err:
        if debug:
            import traceback

            traceback.print_exc()
        click.echo(f"Error: {err}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(125)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as err:  # a bug or an unexpected system error: still one line
        if debug:
            raise
        click.echo(f"Error: unexpected {type(err).__name__}: {err} (run with --debug for the "
                   "traceback)", err=True)
        sys.exit(125)
    sys.exit(code if isinstance(code, int) else 0)
