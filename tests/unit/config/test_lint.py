"""Warnings for `taskforce -C`: names nothing defines, `${NAME}`."""

from __future__ import annotations

import textwrap

import pytest

from taskforce.config.errors import ConfigError
from taskforce.config.lint import warnings
from taskforce.config.load import parse_config
from taskforce.config.yaml_source import load_document


def lint(text: str, environ: dict[str, str] | None = None) -> list[str]:
    text = textwrap.dedent(text)
    parse_config(text, "t.conf")  # warnings are for configurations that load
    return [str(w) for w in warnings(load_document(text, "t.conf"), environ or {})]


def test_a_name_nothing_defines_is_a_warning_with_its_place_and_a_suggestion() -> None:
    found = lint(
        """\
        defines: {confdir: /etc/app}
        tasks:
          app:
            commands: {start: [app, -c, "{confdri}/app.conf"]}
        """
    )
    assert found == [
        "t.conf:4:33: tasks.app.commands.start[2]: warning: {confdri} is defined by no scope "
        "of the configuration nor by the environment: it stays as written "
        "(did you mean 'confdir'?)"
    ]


USES_NAME = "t: {commands: {start: [t, '{NAME}']}}"


@pytest.mark.parametrize(
    "text",
    [
        f"defines: {{NAME: x}}\ntasks: {{{USES_NAME}}}",
        f"defaults: {{NAME: x}}\ntasks: {{{USES_NAME}}}",
        f"role_defines: {{web: {{NAME: x}}}}\ntasks: {{{USES_NAME}}}",
        f"role_defaults: {{web: {{NAME: x}}}}\ntasks: {{{USES_NAME}}}",
        f"tasks: {{{USES_NAME}, o: {{commands: {{start: [o]}}, defines: {{NAME: x}}}}}}",
        f"tasks: {{{USES_NAME}, o: {{commands: {{start: [o]}}, "
        "role_defaults: {db: {NAME: x}}}}",
    ],
)
def test_a_name_any_scope_defines_is_no_warning(text: str) -> None:
    assert lint(text) == []
    assert len(lint(f"tasks: {{{USES_NAME}}}")) == 1


def test_the_environment_task_values_and_role_values_are_no_warning() -> None:
    text = """\
        tasks:
          t:
            commands: {start: ["{HOME}/t", "{Task_name}", "{Task_pidfile}", "{Task_role_db}"]}
        """
    assert lint(text, {"HOME": "/root"}) == []
    assert [w.split(": warning: ")[1][:6] for w in lint(text)] == ["{HOME}"]


def test_a_name_inside_its_own_conditional_is_no_warning() -> None:
    text = """\
        tasks:
          t:
            commands: {start: [t, {DEBUG: [-d, "{DEBUG}", {LOG: [-l, "{LOG}", "{DEBUG}"]}]}]}
            cwd: {WHERE: "{WHERE}"}
        """
    assert lint(text) == []
    # Under another name's conditional, both uses are told.
    assert len(lint(text.replace('{DEBUG: [-d, "{DEBUG}"', '{VERBOSE: [-d, "{DEBUG}"'))) == 2


def test_a_dollar_substitution_gets_a_hint() -> None:
    found = lint(
        """\
        tasks:
          t:
            commands: {start: [t]}
            pidfile: "${HOME}/t.pid"
        """,
        {"HOME": "/root"},
    )
    assert found == [
        "t.conf:4:14: tasks.t.pidfile: warning: '${HOME}': substitution is written {HOME}; "
        "the '$' stays in the value"
    ]


@pytest.mark.parametrize("key", ["env", "environment"])
def test_an_env_key_is_an_error_suggesting_defines(key: str) -> None:
    for text in (
        f"{key}: {{A: b}}\ntasks: {{}}\n",
        f"tasks: {{t: {{commands: {{start: [t]}}, {key}: {{A: b}}}}}}\n",
    ):
        with pytest.raises(ConfigError) as caught:
            parse_config(text, "t.conf")
        [problem] = caught.value.problems
        assert problem.message == f"unknown key {key!r} (did you mean 'defines'?)"
