"""Shell completion through argcomplete: `taskforce completion bash|zsh|fish` prints a
script that asks the command itself what may follow (argcomplete's protocol: the shell
runs `taskforce` with _ARGCOMPLETE in its environment). Completion therefore follows the
one argparse definition, and task names come from the running taskforce.

argcomplete is imported only to print the script or to answer the shell, never when
taskforce supervises.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

SHELLS = ("bash", "zsh", "fish")
ENV = "_ARGCOMPLETE"  # set by the completion script when it asks for candidates
# A completion waits for the answer as the user waits for the prompt: give up soon.
_TASKS_TIMEOUT = 2.0


def add_completion_command(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "completion",
        help="Print the shell completion script for bash, zsh or fish",
        description="Print the shell completion script. Task names are completed from "
        'the running taskforce. bash: eval "$(taskforce completion bash)" in ~/.bashrc; '
        "zsh: the same in ~/.zshrc (after compinit); fish: taskforce completion fish > "
        "~/.config/fish/completions/taskforce.fish",
    )
    p.add_argument("shell", choices=SHELLS, help="The shell to complete in")


def print_script(shell: str, prog: str) -> int:
    from argcomplete.shell_integration import shellcode

    sys.stdout.write(shellcode([prog], shell=shell))
    return 0


def complete(parser: argparse.ArgumentParser) -> None:
    """Answer the completion script's request and exit (argcomplete does)."""
    import argcomplete

    for positional in _task_arguments(parser):
        positional.completer = task_names  # type: ignore[attr-defined]
    argcomplete.autocomplete(parser)


def _task_arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The positionals of every subcommand that name tasks (metavar TASK)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_task_arguments(sub))
        elif not action.option_strings and action.metavar == "TASK":
            found.append(action)
    return found


def task_names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The tasks of the taskforce the command line points at; none when it does not answer."""
    from taskforce.cli.client import ClientError
    from taskforce.cli.commands import _client

    if getattr(parsed_args, "timeout", None) is None:
        parsed_args.timeout = _TASKS_TIMEOUT
    try:
        tasks = _client(parsed_args).get("/status/tasks")
    except (ClientError, OSError, ValueError):
        return []
    if not isinstance(tasks, dict):
        return []
    return sorted(name for name in tasks if isinstance(name, str) and name.startswith(prefix))
