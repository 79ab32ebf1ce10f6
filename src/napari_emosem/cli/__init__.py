"""``emosem``: the command line. Each subcommand lives in its own module with a ``register``.

Errors the user caused (:class:`~napari_emosem.errors.EmoSEMError`) print as one line and exit 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, subcommand) in the order --help lists them
_COMMANDS = (
    ("add", "add"),
    ("propose", "propose"),
    ("status", "status"),
    ("queue", "queue"),
    ("view", "view"),
    ("train", "train"),
    ("evaluate", "evaluate"),
    ("export", "export"),
    ("merge", "merge"),
    ("agreement", "agreement"),
    ("compact", "compact"),
    ("import_apolo", "import-apolo"),
    ("weights", "weights"),
)


def _shows_nothing(default) -> bool:
    return default is None or default is False or default is argparse.SUPPRESS


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless the default is "nothing" (None, off)
    or the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if _shows_nothing(action.default) or "%(default)" in text or "default" in text:
            return text
        if not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class _Parser(argparse.ArgumentParser):
    """Subcommands (and theirs) list their defaults in --help; an option without help text still
    shows its default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if action.help is None and not _shows_nothing(action.default):
            action.help = "default: %(default)s"  # argparse prints no line for an option without help
        return action


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="emosem",
        description="Propose, correct, evaluate and fine-tune emotion-stimulus annotations of paintings.",
    )
    parser.add_argument("--version", action="version", version=f"napari-emosem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module_name, _ in _COMMANDS:
        try:
            module = importlib.import_module(f".{module_name}", __name__)
        except ModuleNotFoundError as exc:  # a subcommand not written yet
            if exc.name == f"{__name__}.{module_name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import EmoSEMError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EmoSEMError as exc:
        print(f"emosem {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emosem {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
