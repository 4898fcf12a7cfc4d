"""`taskforce completion bash|zsh|fish`: scripts the shells accept, and bash completing
subcommands, flags and (from a running taskforce) task names as a user pressing TAB gets
them. The shell is what is tested here: it runs the completion function as bash would."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.config import write_config
from support.probes import Probes, probe_task
from support.runner import Taskforce
from support.wait import wait_for
from taskforce.cli.client import default_socket

# What bash does on TAB: the words of the line to COMP_WORDS..., then the function that
# `complete -p taskforce` names; what it leaves in COMPREPLY is printed one a line.
BASH_TAB = r"""
eval "$(taskforce completion bash)"
func=$(complete -p taskforce | sed -E 's/.* -F ([^ ]+) .*/\1/')
COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
"$func" taskforce "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


def script(taskforce: Taskforce, shell: str) -> str:
    result = taskforce.run("completion", shell)
    assert result.returncode == 0, result.stderr
    return result.stdout


def tab(taskforce: Taskforce, line: str) -> list[str]:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    result = subprocess.run(
        [bash, "-c", BASH_TAB, "tab", line],
        env=taskforce.env,  # taskforce (this checkout's) first in PATH
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    return [word.strip() for word in result.stdout.splitlines() if word.strip()]


@pytest.mark.parametrize(
    ("shell", "check"),
    [("bash", ["-n"]), ("zsh", ["-n"]), ("fish", ["--no-execute"])],
)
def test_the_script_parses_in_its_shell(
    taskforce: Taskforce, tmp_path: Path, shell: str, check: list[str]
) -> None:
    program = shutil.which(shell)
    if program is None:
        pytest.skip(f"{shell} is not installed")
    path = tmp_path / f"taskforce.{shell}"
    path.write_text(script(taskforce, shell))
    result = subprocess.run(
        [program, *check, str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_an_unknown_shell_is_bad_usage(taskforce: Taskforce) -> None:
    result = taskforce.run("completion", "tcsh-9")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "Traceback" not in result.stderr


def test_bash_completes_subcommands_and_flags(taskforce: Taskforce) -> None:
    assert {"start", "status"} <= set(tab(taskforce, "taskforce sta"))
    assert set(tab(taskforce, "taskforce --ver")) == {"--verbose", "--version"}
    assert {"bash", "zsh", "fish"} <= set(tab(taskforce, "taskforce completion "))


def test_bash_completes_task_names_from_the_running_taskforce(
    tmp_path: Path, taskforce: Taskforce, probes: Probes
) -> None:
    tasks = {name: probe_task() for name in ("alpha", "alpine", "beta")}
    config = write_config(tmp_path / "tf.conf", tasks)
    pidfile = tmp_path / "tf.pid"
    taskforce.start("-p", str(pidfile), "-f", str(config))
    probes.wait(3)
    socket = Path(default_socket(str(pidfile)))
    wait_for(socket.exists, what=f"the control socket {socket}")
    assert sorted(tab(taskforce, f"taskforce -p {pidfile} restart al")) == ["alpha", "alpine"]
    assert {"alpha", "alpine", "beta"} <= set(tab(taskforce, f"taskforce status -p {pidfile} "))
    # Nothing answers there: no names, and no error in the user's face.
    assert tab(taskforce, f"taskforce -p {tmp_path / 'none.pid'} restart al") == []


def test_the_supervisor_does_not_import_the_completion_tools(taskforce: Taskforce) -> None:
    probe = (
        "import sys; from taskforce.cli.main import build_parser; "
        "build_parser('taskforce').parse_args(['-e', '-f', 'tf.conf']); "
        "print(sorted(m for m in sys.modules if m.startswith(('argcomplete', 'argparse_manpage'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stderr
