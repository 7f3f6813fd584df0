"""The ``pinnace`` command line. Only :func:`main` lives here, so ``pinnace --version``
answers without importing click; the commands are in :mod:`pinnace.cli.root`."""

from __future__ import annotations

import gc
import os
import sys


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; print engine errors as one line and exit with docker's codes.

    It leaves without the interpreter's teardown (``os._exit`` once the standard
    streams are flushed): every command has committed and closed what it opened,
    and tearing down the modules and the state connection (which would checkpoint
    the SQLite WAL) costs more than a small container's whole run. For the same
    reason the cyclic garbage collector is off: a command is short, and what
    stays (a foreground run, ``logs -f``) makes little garbage.
    """
    gc.disable()
    try:
        _run(sys.argv[1:] if argv is None else argv)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if done.code is not None and not isinstance(done.code, int):
            print(done.code, file=sys.stderr)
    else:
        code = 0
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


def _run(args: list[str]) -> None:
    """Parse and run one command line; leave through SystemExit."""
    if args in (["--version"], ["-v"]):
        from pinnace import __version__

        print(f"pinnace version {__version__}")
        sys.exit(0)
    if os.geteuid() != 0:
        _enter_rootless()
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
        full = _no_space(err)
        if full is not None:
            click.echo(f"Error: {full}", err=True)
            sys.exit(full.exit_code)
        click.echo(f"Error: unexpected {type(err).__name__}: {err} (run with --debug for the "
                   "traceback)", err=True)
        sys.exit(125)
    sys.exit(code if isinstance(code, int) else 0)


def _enter_rootless() -> None:
    """An ordinary user's pinnace runs as root of its own user namespace."""
    from pinnace import rootless

    try:
        rootless.enter()
    except OSError as err:
        print(f"Error: rootless pinnace cannot start: {err.strerror or err}", file=sys.stderr)
        sys.exit(125)


def _no_space(err: Exception) -> Exception | None:
    """A full filesystem that no write path named (an ENOSPC or EDQUOT OSError, SQLite's
    "database or disk is full") as a :class:`~pinnace.errors.NoSpace`; else None."""
    from pinnace.errors import is_no_space, no_space

    if is_no_space(err):
        assert isinstance(err, OSError)
        return no_space(err, "a file", err.filename)
    if getattr(err, "sqlite_errorcode", None) == 13:  # SQLITE_FULL
        from pinnace.errors import NoSpace

        return NoSpace(f"no space left on device writing the state database: {err}")
    return None
