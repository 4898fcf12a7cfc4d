"""`sockets` and `restart` of a task: validated with clear problems, resolved into specs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from taskforce.config.errors import ConfigError
from taskforce.config.host import HostFacts
from taskforce.config.load import parse_config
from taskforce.config.resolve import resolve
from taskforce.core.sockets import TCP, UNIX, SocketSpec, activation_env
from taskforce.core.spec import TaskSpec

GOOD = """
defines: {PORT: "8080"}
tasks:
  web:
    commands: {start: [server]}
    count: 2
    sockets:
      http: "127.0.0.1:{PORT}"
      v6: {listen: "[::1]:0", backlog: 10, reuseport: true}
      ctl: {listen: /run/app/ctl.sock, mode: "0660", owner: www, group: 33}
    restart: {rolling: 2, overlap: true}
  plain:
    commands: {start: [server]}
"""


def resolved(text: str) -> dict[str, TaskSpec]:
    config = parse_config(textwrap.dedent(text), "t.conf")
    desired, problems = resolve(config, None, {}, HostFacts.from_system())
    assert problems == ()
    return dict(desired.tasks)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), "t.conf")
    return [str(p) for p in caught.value.problems]


def test_sockets_resolve_in_order_into_every_instance() -> None:
    web = resolved(GOOD)["web"]
    sockets = (
        SocketSpec("http", TCP, "127.0.0.1", 8080),
        SocketSpec("v6", TCP, "::1", 0, backlog=10, reuseport=True),
        SocketSpec("ctl", UNIX, path="/run/app/ctl.sock", mode=0o660, owner="www", group=33),
    )
    assert [i.launch.sockets for i in web.instances] == [sockets, sockets]
    assert [s.address for s in sockets] == ["127.0.0.1:8080", "[::1]:0", "/run/app/ctl.sock"]
    assert (web.rolling, web.overlap, web.rolls, web.at_a_time) == (2, True, True, 2)
    plain = resolved(GOOD)["plain"]
    assert (plain.instances[0].launch.sockets, plain.rolling, plain.rolls) == ((), None, False)


def test_the_activation_environment() -> None:
    sockets = resolved(GOOD)["web"].instances[0].launch.sockets
    assert dict(activation_env(sockets, "42")) == {
        "LISTEN_FDS": "3",
        "LISTEN_FDNAMES": "http:v6:ctl",
        "LISTEN_PID": "42",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"a:b": "127.0.0.1:1"}', "the socket name 'a:b' contains ':'"),
        ('{"s": "127.0.0.1:99999"}', "port 99999 is out of range (0 to 65535)"),
        ('{"s": "8080"}', "'8080' is neither host:port, [IPv6]:port nor an absolute socket"),
        ('{"s": "relative.sock"}', "neither host:port"),
        ('{"s": {"listen": "/x.sock", "mode": 660}}', 'a quoted octal mode such as "0660"'),
        ('{"s": {"listen": "/x.sock", "backlog": 0}}', "a whole number of at least 1"),
        ('{"s": {"port": 80}}', "missing the required key 'listen'"),
        ('["127.0.0.1:80"]', "expected a map"),
    ],
)
def test_socket_problems_say_where_and_what(body: str, message: str) -> None:
    found = problems(f'{{"tasks": {{"t": {{"commands": {{"start": ["p"]}}, "sockets": {body}}}}}}}')
    assert any(message in p and "tasks.t.sockets" in p for p in found), found


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"rolling": 0}', "expected true, false or how many at a time"),
        ('{"rolling": "yes"}', "expected true, false or how many at a time"),
        ('{"overlap": 1}', "expected true or false"),
        ('{"surge": 1}', "unknown key 'surge'"),
    ],
)
def test_restart_problems(body: str, message: str) -> None:
    found = problems(f'{{"tasks": {{"t": {{"commands": {{"start": ["p"]}}, "restart": {body}}}}}}}')
    assert any(message in p and "tasks.t.restart" in p for p in found), found


def test_mode_on_a_tcp_socket_is_refused_when_resolved() -> None:
    config = parse_config(
        '{"tasks": {"t": {"commands": {"start": ["p"]}, '
        '"sockets": {"s": {"listen": "127.0.0.1:1", "mode": "0600"}}}}}',
        "t.conf",
    )
    _, found = resolve(config, None, {}, HostFacts.from_system())
    assert [p.message for p in found] == ["mode and owner are for unix sockets"]


def test_rolling_false_turns_it_off() -> None:
    spec = resolved(
        '{"tasks": {"t": {"commands": {"start": ["p"]}, "count": 3, '
        '"restart": {"rolling": false}}}}'
    )["t"]
    assert (spec.rolling, spec.rolls) == (0, False)


def test_the_readme_example_resolves() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme.split("### Held sockets and rolling restarts", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    web = resolved(example)["web"]
    names = [s.name for s in web.instances[0].launch.sockets]
    assert names == ["http", "admin", "ctl"]
    assert (web.rolls, web.at_a_time) == (True, 1)
