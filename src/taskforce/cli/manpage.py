"""taskforce(1), the man page, written from the command's own argparse definition.

setup.py calls render() when the package is built and installs the page as
share/man/man1/taskforce.1; the tests call it too. argparse-manpage is a build (and
development) requirement only: nothing imports this module when taskforce runs.
"""

from __future__ import annotations

from taskforce import __version__

SUMMARY = "an event-driven process supervisor"
URL = "https://pypi.org/project/taskforce/"


def render() -> str:
    """The roff source of taskforce(1)."""
    from argparse_manpage.manpage import Manpage  # type: ignore[import-untyped]

    from taskforce.cli.main import build_parser

    page = Manpage(build_parser("taskforce"), format="pretty")
    # The attributes the tool documents for callers to set (its _data is private).
    page.source = f"taskforce {__version__}"
    page.manual = "User Commands"
    page.description = SUMMARY
    # The tool writes help text as it wraps it: a line of it that starts with an
    # apostrophe would be read as a roff request. \& (a zero-width character) keeps it text;
    # the tool's own requests start with a period.
    return "".join(
        "\\&" + line if line.startswith("'") else line for line in str(page).splitlines(True)
    )


if __name__ == "__main__":
    print(render(), end="")
