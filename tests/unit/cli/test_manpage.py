"""taskforce(1) is made from the command's argparse definition: every option of every
(sub)command is in it, and groff reads it without a warning."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from taskforce.cli.main import build_parser

pytest.importorskip("argparse_manpage")

from taskforce.cli.manpage import render


def _parsers(
    parser: argparse.ArgumentParser,
) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _roff(text: str) -> str:
    return text.replace("-", "\\-")


def test_every_option_of_every_command_is_in_the_page() -> None:
    page = render()
    assert page.startswith('.TH TASKFORCE "1"')
    missing = [
        f"{parser.prog} {option}"
        for parser in _parsers(build_parser("taskforce"))
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and action.help != argparse.SUPPRESS
        for option in action.option_strings
        if f"\\fB{_roff(option)}\\fR" not in page
    ]
    assert not missing


def test_every_command_has_its_section() -> None:
    page = render()
    for parser in _parsers(build_parser("taskforce")):
        if parser.prog != "taskforce":
            assert f"'{parser.prog}'" in page


def test_groff_reads_the_page_without_warnings(tmp_path: object) -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed")
    result = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", "-z"],
        input=render(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
