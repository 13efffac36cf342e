"""The one way a command group adds its commands, so every command gets the common flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable

AddCommand = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def command_adder(group: argparse.ArgumentParser, common: argparse.ArgumentParser) -> AddCommand:
    """`command(name, func, help)` for `group`: a subparser with the common flags that runs func."""
    commands = group.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, parents=[common], help=help_text, description=help_text,
                                allow_abbrev=False)
        p.set_defaults(func=func)
        return p

    return command
