"""``gitmail`` / ``git-mail`` command line: a thin layer over :mod:`gitmail.api`.

``main(argv) -> int`` maps every :class:`GitmailError` to its exit code with a
one-line ``gitmail: ...`` message on stderr. A reader that closes the pipe
(``gitmail log | head -1``) ends the command quietly with status 0, as git's
output does; Ctrl-C (SIGINT) ends it with status 130 and one line
(``gitmail: interrupted``): every write is atomic (core/files) or a git ref
update, so nothing is left half-written. Commands live one per module in
:mod:`gitmail.cli.commands` and are imported only when run, so that cheap
commands (``list``, the hooks) start fast.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import types
from typing import Any, Callable, Optional, Sequence

import click

from gitmail import __version__
from gitmail.errors import GitmailError, local_storage_error
from gitmail.errors import UsageError as GitmailUsageError

# command name -> module in gitmail.cli.commands
COMMANDS = {
    "init": "init",
    "send": "send",
    "list": "list_",
    "read": "read",
    "mark": "mark",
    "archive": "archive",
    "reply": "reply",
    "thread": "thread",
    "trace": "trace",
    "members": "members",
    "whoami": "whoami",
    "verify": "verify",
    "log": "log",
    "sync": "sync",
    "attachments": "attachments",
    "mcp": "mcp",
    "hook": "hook",
    "group": "group",
    "respond": "respond",
    "ack": "ack",
    "guard": "guard",
    "hooks": "hooks",
    "show": "show",
    "org": "org",
    "key": "key",
    "search": "search",
    "export": "export",
    "import": "import_",
    "outbox": "outbox",
    "state": "state",
    "pack": "pack",
    "deinit": "deinit",
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        mod = COMMANDS.get(name)
        if mod is None:
            return None
        command: click.Command = importlib.import_module(f"gitmail.cli.commands.{mod}").command
        return command


# Top-level commands without the unread notice: setup and the machine-facing front-ends
# (their output is read by git, Claude Code or an MCP client). Every other command that
# takes the common options ends with it (on a terminal; never with --json or --quiet).
NO_NOTICE = {"init", "deinit", "mcp", "hook", "hooks", "guard"}


# --utc / GITMAIL_UTC: times for people in UTC instead of the local zone (gitmail.cli.render).
UTC_TIMES = False
# The top-level command the last run of main() invoked ("send"), or None (gitmail.cli.warm
# asks it of a command that ended with 0: whether its process may serve the next one).
LAST_COMMAND: Optional[str] = None


def common(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command takes: --repo, --as, --json, --quiet, --utc; then the unread notice."""

    inner = f

    @functools.wraps(inner)
    def wrapper(**kw: Any) -> Any:
        global UTC_TIMES
        if kw.pop("utc", False):  # not passed on: only the renderer needs it
            UTC_TIMES = True
        check_text_params(kw)
        result = inner(**kw)
        ctx = click.get_current_context()
        while ctx.parent is not None and ctx.parent.parent is not None:
            ctx = ctx.parent  # the top-level command: "group" for "gitmail group list"
        if ctx.info_name not in NO_NOTICE:
            notice(kw.get("repo"), kw.get("as_"), bool(kw.get("as_json")), bool(kw.get("quiet")))
        return result

    f = wrapper
    f = click.option("--utc", is_flag=True, envvar="GITMAIL_UTC",
                     help="Show times in UTC, not the local time zone [env GITMAIL_UTC=1].")(f)
    f = click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")(f)
    f = click.option("--as", "as_", metavar="NAME", envvar="GITMAIL_USER", help="Act as this member [env GITMAIL_USER; git config gitmail.user].")(f)
    f = click.option("--repo", metavar="PATH", envvar="GITMAIL_REPO", help="The clone to use [env GITMAIL_REPO; default: current directory].")(f)
    return f


# Parameters that name files: any bytes a file system takes (Python hands undecodable ones over
# as lone surrogates, which the os module turns back into the same bytes).
_PATH_METAVARS = frozenset({"PATH", "DIR", "FILE", "PATH_OR_URL"})


def check_text_params(values: dict[str, Any]) -> None:
    """Raise :class:`~gitmail.errors.UsageError` naming the first text parameter of the current
    command (a name, a subject, a message: anything but a file path) that is not valid UTF-8.
    Python gives an argument or environment variable of other bytes as lone surrogates,
    which went as far as writing a message before failing (exit 70, an internal error)."""
    command = click.get_current_context().command
    for p in command.params:
        if isinstance(p.type, click.Path) or p.metavar in _PATH_METAVARS or p.name not in values:
            continue
        value = values[p.name]
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, str) and not _utf8(v):
                name = next((o for o in p.opts if o.startswith("--")), p.opts[0]) if isinstance(p, click.Option) \
                    else p.human_readable_name
                env = f" (or ${p.envvar})" if isinstance(p, click.Option) and isinstance(p.envvar, str) else ""
                raise GitmailUsageError(f"{name}{env} is not valid UTF-8")


def _utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="gitmail")
def cli() -> None:
    """gitmail: a mailbox that lives in git.

    Each message is a signed commit on its recipient's branch in the org repo.
    """


def notice(repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """One line on stderr about unread mail (terminal only; not with --json/--quiet)."""
    forced = os.environ.get("GITMAIL_NOTICE", "auto")
    if as_json or quiet or forced == "never" or (forced != "always" and not sys.stderr.isatty()):
        return
    try:
        from gitmail import api

        unread, urgent = api.unread_count(repo, as_=as_)
    except GitmailError:
        return
    if unread:
        extra = f" ({urgent} urgent)" if urgent else ""
        plural = "message" if unread == 1 else "messages"
        click.echo(f"📬 {unread} unread {plural}{extra}. Run: gitmail read", err=True)


INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command ended by Ctrl-C
_interrupted = False


def _on_sigint(signum: int, frame: Any) -> None:
    """Python's own SIGINT behaviour (KeyboardInterrupt), remembering that it happened: a git
    child killed by the same Ctrl-C may surface as a git error first. Only the first Ctrl-C
    raises: more of them while it is answered would each print a traceback."""
    global _interrupted
    if _interrupted:
        return  # a second Ctrl-C while the first is answered: one answer is enough
    _interrupted = True
    raise KeyboardInterrupt


def _say(line: str) -> None:
    """One line on stderr, whatever state stderr is in."""
    try:
        click.echo(line, err=True)
    except (OSError, ValueError):
        pass


def _silence_stdout() -> None:
    """Point stdout at /dev/null after its reader went away, so that the flush at exit
    cannot raise again (Python would print "Exception ignored" and exit 120)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):  # no real file descriptor (tests capture stdout)
        pass


def _run(args: Optional[list[str]]) -> int:
    """Parse and run one command; exceptions go to :func:`main`."""
    global UTC_TIMES, LAST_COMMAND
    UTC_TIMES = False  # set by --utc (common) for this run only
    LAST_COMMAND = None
    # Not cli.main(): on a closed pipe it exits 1 silently, and on Ctrl-C it prints an extra line.
    instruction = os.environ.get("_GITMAIL_COMPLETE")
    if instruction:  # shell completion, as cli.main() would serve it
        from click.shell_completion import shell_complete

        return shell_complete(cli, {}, "gitmail", "_GITMAIL_COMPLETE", instruction)
    with cli.make_context("gitmail", args if args is not None else sys.argv[1:]) as ctx:
        cli.invoke(ctx)
        LAST_COMMAND = ctx.invoked_subcommand
    sys.stdout.flush()  # a closed pipe shows here for short outputs
    return 0


_PYDANTIC_PLUGINS = "pydantic.plugin._loader"


class _NoPydanticPlugins:
    """Import hook: ``pydantic.plugin._loader`` as a module that finds no plugins (see
    :func:`_skip_pydantic_plugins`). Any other name asked of it loads pydantic's real module."""

    def __init__(self) -> None:
        self.active = True

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != _PYDANTIC_PLUGINS or not self.active:
            return None
        from importlib.machinery import ModuleSpec

        return ModuleSpec(name, self)  # type: ignore[arg-type]  # a Loader by duck typing (importlib.abc is not cheap)

    def create_module(self, spec: Any) -> None:
        return None  # the default module

    def exec_module(self, module: types.ModuleType) -> None:
        def real(name: str) -> Any:
            if name.startswith("__"):  # the import system asks for __path__ and the like
                raise AttributeError(name)
            self.active = False
            if sys.modules.get(_PYDANTIC_PLUGINS) is module:
                del sys.modules[_PYDANTIC_PLUGINS]
            return getattr(importlib.import_module(_PYDANTIC_PLUGINS), name)

        setattr(module, "get_plugins", lambda: ())
        setattr(module, "__getattr__", real)


def _skip_pydantic_plugins() -> None:
    """Let pydantic find no plugins without looking for them, in the CLI's process only.

    On its first validation pydantic imports ``importlib.metadata`` and scans
    every installed package's entry points for plugins: 30-70 ms of CPU of a
    ~0.3 s ``gitmail send`` on a 2-core VM (issue 15, ``python -X importtime``).
    gitmail's models use no plugin. pydantic's own switch,
    ``PYDANTIC_DISABLE_PLUGINS``, skips the scan but not the import, and set in
    the environment it would reach git's hooks. An import hook, so that nothing
    of pydantic is loaded before pydantic itself asks for it (the listing fast
    path loads none).
    """
    if _PYDANTIC_PLUGINS in sys.modules or any(isinstance(f, _NoPydanticPlugins) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _NoPydanticPlugins())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; return the exit status instead of exiting.

    0 on success and when the reader of stdout went away (a closed pipe); a
    :class:`GitmailError`'s exit code with one ``gitmail: ...`` line; 130 with
    ``gitmail: interrupted`` on SIGINT; 70 with one line for a bug.
    """
    global _interrupted
    _interrupted = False
    _skip_pydantic_plugins()
    if not os.environ.get("PATH"):
        # Run with no PATH at all (a hook runner's bare environment): look for git where
        # execvp would without one, rather than in the current directory or nowhere.
        os.environ["PATH"] = os.defpath
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        return _main(argv)
    finally:
        if signal.getsignal(signal.SIGINT) is _on_sigint:
            # After a Ctrl-C has been answered the process is on its way out (it may still
            # wait a moment for a worker pool to stop): a second Ctrl-C must not print a
            # traceback from the interpreter's shutdown.
            signal.signal(signal.SIGINT, signal.SIG_IGN if _interrupted else signal.default_int_handler)


def _main(argv: Optional[Sequence[str]]) -> int:
    try:
        return _run(list(argv) if argv is not None else None)
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        return _interrupt()
    except click.exceptions.Abort:  # a prompt answered "no", or closed
        if _interrupted:
            return _interrupt()
        _say("gitmail: aborted")
        return INTERRUPTED
    except GitmailError as e:
        if _interrupted:
            return _interrupt()
        from gitmail.api.views import error_line

        _say(f"gitmail: {error_line(e.message)}")
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except SystemExit as e:  # a command chose its own exit status
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except click.UsageError as e:  # bad arguments: one line, as every error (click's own shows four)
        from gitmail.api.views import error_line

        where = f" (see {e.ctx.command_path} --help)" if e.ctx is not None else ""
        _say(f"gitmail: {error_line(e.format_message())}{where}")
        return e.exit_code
    except click.ClickException as e:
        try:
            e.show()
        except OSError:
            pass
        return e.exit_code
    except Exception as e:  # a bug: still one line, full traceback on request
        if _interrupted:
            return _interrupt()
        from gitmail.core.repo import opened_git_dirs

        storage = local_storage_error(e, opened_git_dirs()[::-1])  # a full disk or read-only clone is no bug: name it
        if storage is not None and not os.environ.get("GITMAIL_DEBUG"):
            _say(f"gitmail: {storage.message}")
            return storage.exit_code
        if os.environ.get("GITMAIL_DEBUG"):
            raise
        from gitmail.api.views import error_line

        _say(f"gitmail: internal error: {type(e).__name__}: {error_line(e)} (set GITMAIL_DEBUG=1 for a traceback)")
        return 70


def _interrupt() -> int:
    """Ctrl-C: one line (after a line break on a terminal, where ``^C`` was echoed); 130."""
    lead = "\n" if sys.stderr.isatty() else ""
    _say(f"{lead}gitmail: interrupted")
    return INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
