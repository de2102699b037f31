"""The `suite` command line (also `python -m suite`).

Each command group lives in its own module with a `register(subparsers)` function that adds its
sub-commands; a sub-command's `func(args) -> int` does the work. A `UserError` (or `ValueError`
from the library) becomes one line on stderr and exit code 2, never a traceback.
"""

import argparse
import importlib
import sys
import warnings
from typing import List, Optional

from suite.environment import code_version
from suite.errors import UserError

# Each sub-command and the module that adds it, in the order `suite --help` lists them.
COMMANDS = {"data": "suite.data.commands", "train": "suite.harness.commands", "eval": "suite.harness.commands",
            "demo": "suite.workflows.commands", "study": "suite.workflows.commands",
            "pretrain": "suite.workflows.commands", "bench": "suite.bench.commands",
            "report": "suite.report.commands"}


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser of every sub-command; given `command`, a key of COMMANDS, only of the commands
    its module adds, so that e.g. `suite report` or `suite data` does not import torch (over a
    second, and most of a short command's time)."""
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    parser = argparse.ArgumentParser(
        prog="suite",
        description="seesaw-suite: train, evaluate, benchmark and report long-tailed "
        "instance segmentation losses (Seesaw, CE, focal, EQL, EQLv2, federated).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in modules:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    # Detectron2's modules apply torch.jit.script at import, which current torch deprecates with a
    # warning per use: nothing a user can act on, and it would bury a one-line error.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    code_version()  # the commit this process runs, before a long command's records are written
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError) as error:
        print(f"suite {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"suite {args.command}: interrupted", file=sys.stderr)
        return 130
