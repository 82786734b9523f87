"""The ``mmtalker`` command line: one entry point, one module per subcommand in ``mmtalker.commands``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets ``func`` to a
function taking the parsed ``argparse.Namespace`` and returning an exit code (or None for 0).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import warnings

from mmtalker import __version__
from mmtalker.errors import MMTalkerError

# One line per subcommand module, in the order they appear in --help.
COMMANDS = [
    "mmtalker.commands.demo",
    "mmtalker.commands.inspect",
    "mmtalker.commands.data",
    "mmtalker.commands.train",
    "mmtalker.commands.animate",
    "mmtalker.commands.stream",
    "mmtalker.commands.evaluate",
    "mmtalker.commands.report",
    "mmtalker.commands.render",
    "mmtalker.commands.export",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmtalker",
        description=(
            "Speech-driven 3D facial animation. Give it speech and a face mesh; it returns the face talking "
            "(vertex arrays, videos with sound, files for Blender and game engines). It also generates a "
            "synthetic talking-face benchmark, reads VOCASET/BIWI/Multiface, and trains and scores MMTalker "
            "and its peers by the same rules."
        ),
        epilog="Run 'mmtalker COMMAND --help' for the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mmtalker {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback when something fails")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def _innermost_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command ``args`` ran (``mmtalker data preview`` -> preview's), for its own usage line."""
    while True:
        action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(args, action.dest, None) if action is not None else None
        if name is None or name not in action.choices:
            return parser
        parser = action.choices[name]


def _one_line_warning(command: str):
    """``warnings.showwarning`` for the CLI: mmtalker's own warnings (they name their file and the problem) as one line,
    ``mmtalker COMMAND: warning: ...``, without the source line Python adds; others' warnings as Python shows them."""
    package = os.path.dirname(os.path.abspath(__file__))
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not os.path.abspath(filename).startswith(package + os.sep):
            return default(message, category, filename, lineno, file, line)
        line = f"mmtalker {command}: warning: {message}"
        try:  # on a line of its own, not after a progress bar's
            from tqdm import tqdm

            tqdm.write(line, file=file or sys.stderr)
        except ImportError:
            print(line, file=file or sys.stderr)

    return show


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler's stop), raised as an interrupt so that the same clean-up runs as for
    Ctrl-C: half-written outputs under their temporary names are removed."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the command's own usage, not the top-level one, so the user sees the options it does take
        _innermost_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if on_main_thread else None
    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.showwarning = _one_line_warning(args.command)
            code = args.func(args)
    except MMTalkerError as exc:
        if args.debug:
            raise
        print(f"mmtalker {args.command}: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"mmtalker {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:
        # the reader of our output went away (`mmtalker inspect DATA | head -1`): stop quietly, as shells do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as exc:  # the file system refused a read or write the checks up front could not foresee
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"mmtalker {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
