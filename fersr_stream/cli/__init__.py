"""Command-line entry points, and the error policy they share.

A user mistake (:class:`~fersr_stream.errors.FersrError`, or a click usage error) becomes one line on stderr,
``PROG: error: MESSAGE``, and exit code 2; Ctrl-C exits with 130; anything else is a bug and keeps its traceback.

Two ways to apply it: call :func:`run_cli` from the console entry point, and/or give the top-level command
``cls=Group`` (or ``cls=Command``) so that ``command.main()`` and click's ``CliRunner`` apply it too::

    @click.group(name="fersr-models", cls=Group)
    def cli(): ...

    def main(argv=None) -> None:
        run_cli(cli, "fersr-models", argv)
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from ..errors import FersrError

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
# click >= 8.2 raises this UsageError (exit 2) for a group run without arguments; older click exits 0 by itself.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def run_cli(command: click.Command, prog_name: str | None = None, args=None, **extra) -> NoReturn:
    """Run a click command with the fersr error policy, then exit with its status.

    Args:
        command: the top-level click command or group.
        prog_name: the name in usage lines and error messages (default: the command's name).
        args: argument list (default: ``sys.argv[1:]``).
        extra: passed on to ``command.main``.
    """
    prog = prog_name or command.name
    try:
        rv = command.main(args, prog_name, standalone_mode=False, **extra)
    except FersrError as e:
        _fail(prog, str(e) or type(e).__name__, e.exit_code)
    except _NO_ARGS_IS_HELP as e:
        e.show()  # a bare group command prints its help, as click does
        sys.exit(e.exit_code)
    except click.UsageError as e:
        see = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        _fail(prog, e.format_message() + see, e.exit_code)
    except click.ClickException as e:
        _fail(prog, e.format_message(), e.exit_code)
    except click.Abort as e:
        # click turns Ctrl-C into Abort; a declined prompt is an Abort too, but not an interrupt.
        sys.exit(EXIT_INTERRUPTED if isinstance(e.__cause__, KeyboardInterrupt) else 1)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    # click returns the status of --help and ctx.exit(), else the command's return value: an int return is
    # therefore a status too, as with ctx.exit().
    sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


class _UserErrors:
    """Mixin for a top-level click command: ``main()`` in standalone mode goes through :func:`run_cli`, and ``-h``
    is ``--help``."""

    def __init__(self, *args, context_settings=None, **kwargs):
        context_settings = {"help_option_names": ["-h", "--help"], **(context_settings or {})}
        super().__init__(*args, context_settings=context_settings, **kwargs)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Run the command; with ``standalone_mode=False`` exceptions propagate, as in click."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        run_cli(self, prog_name, args, complete_var=complete_var, **extra)


class Command(_UserErrors, click.Command):
    """A click command with the fersr error policy (see the module docstring)."""


class Group(_UserErrors, click.Group):
    """A click group with the fersr error policy (see the module docstring)."""


def _fail(prog: str | None, message: str, code: int) -> None:
    """Print ``PROG: error: MESSAGE`` as one line on stderr and exit with ``code``."""
    line = " ".join(message.split())
    click.echo(f"{prog or 'fersr'}: error: {line}", err=True)
    sys.exit(code)
