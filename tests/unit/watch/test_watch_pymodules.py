"""Finding the files a Python program is made of, for the python event."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from taskforce.watch import discover_modules, discover_modules_async, is_python_script


@pytest.fixture
def program(tmp_path: Path) -> Path:
    """bin/main.py imports helper (next to it), which imports lib.pkg.util (on PYTHONPATH)."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "lib" / "pkg").mkdir(parents=True)
    (tmp_path / "lib" / "pkg" / "__init__.py").write_text("")
    (tmp_path / "lib" / "pkg" / "util.py").write_text("import keyword\nVALUE = 1\n")
    (tmp_path / "lib" / "unused.py").write_text("")
    (tmp_path / "bin" / "helper.py").write_text("import os\nfrom pkg import util\n")
    script = tmp_path / "bin" / "main.py"
    script.write_text("import sys\nimport helper\n")
    return script


def test_script_and_its_local_imports(program: Path, tmp_path: Path) -> None:
    found = discover_modules(str(program), [str(tmp_path / "lib")])
    assert found == {
        str(program),
        str(tmp_path / "bin" / "helper.py"),
        str(tmp_path / "lib" / "pkg" / "__init__.py"),
        str(tmp_path / "lib" / "pkg" / "util.py"),
    }


def test_standard_library_is_left_out(program: Path, tmp_path: Path) -> None:
    stdlib = os.path.dirname(os.__file__)
    found = discover_modules(str(program), [str(tmp_path / "lib"), stdlib])
    assert not any(path.startswith(stdlib + os.sep) for path in found)
    assert str(tmp_path / "lib" / "pkg" / "util.py") in found


def test_modules_outside_the_search_path_are_left_out(program: Path) -> None:
    found = discover_modules(str(program), [])
    assert found == {str(program), str(program.parent / "helper.py")}


def test_changed_imports_change_the_result(program: Path, tmp_path: Path) -> None:
    lib = [str(tmp_path / "lib")]
    assert str(tmp_path / "lib" / "unused.py") not in discover_modules(str(program), lib)
    (program.parent / "helper.py").write_text("import unused\n")
    found = discover_modules(str(program), lib)
    assert str(tmp_path / "lib" / "unused.py") in found
    assert str(tmp_path / "lib" / "pkg" / "util.py") not in found


def test_script_with_a_syntax_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    script = tmp_path / "broken.py"
    script.write_text("import helper\ndef oops(:\n")
    (tmp_path / "helper.py").write_text("")
    with caplog.at_level(logging.WARNING, logger="taskforce.watch"):
        found = discover_modules(str(script), [])
    assert str(script) in found
    assert "broken.py" in caplog.text


def test_imported_module_with_a_syntax_error(program: Path, tmp_path: Path) -> None:
    helper = program.parent / "helper.py"
    helper.write_text("from pkg import util\nclass :\n")
    (program.parent / "other.py").write_text("")
    program.write_text("import helper\nimport other\n")
    found = discover_modules(str(program), [str(tmp_path / "lib")])
    # The broken module is watched (fixing it matters) and the rest is still found.
    assert {str(program), str(helper), str(program.parent / "other.py")} <= found


def test_missing_script(tmp_path: Path) -> None:
    script = tmp_path / "missing.py"
    assert discover_modules(str(script), []) == {str(script)}


def test_script_without_py_suffix(tmp_path: Path) -> None:
    script = tmp_path / "daemon"
    script.write_text("#!/usr/bin/env python3\nimport helper\n")
    (tmp_path / "helper.py").write_text("")
    assert discover_modules(str(script), []) == {str(script), str(tmp_path / "helper.py")}


def test_symlinked_script_searches_next_to_its_real_file(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("import helper\n")
    (tmp_path / "app" / "helper.py").write_text("")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").symlink_to(tmp_path / "app" / "main.py")
    found = discover_modules(str(tmp_path / "bin" / "tool"), [])
    assert found == {str(tmp_path / "bin" / "tool"), str(tmp_path / "app" / "helper.py")}


def test_discovery_in_a_thread(program: Path, tmp_path: Path) -> None:
    async def main() -> frozenset[str]:
        return await discover_modules_async(str(program), [str(tmp_path / "lib")])

    found = asyncio.run(main())
    assert str(tmp_path / "lib" / "pkg" / "util.py") in found


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("tool.py", "", True),
        ("tool", "#!/usr/bin/python3 -u\nprint()\n", True),
        ("tool", "#!/usr/bin/env python\n", True),
        ("tool", "#!/bin/sh\nexec python3 x\n", False),
        ("tool", "\x7fELF", False),
        ("tool", "", False),
    ],
)
def test_is_python_script(tmp_path: Path, name: str, content: str, expected: bool) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert is_python_script(str(path)) is expected


def test_is_python_script_missing_file(tmp_path: Path) -> None:
    assert not is_python_script(str(tmp_path / "missing"))
