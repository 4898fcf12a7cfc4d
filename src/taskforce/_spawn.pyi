from collections.abc import Sequence

def spawn(
    path: bytes,
    argv: Sequence[bytes | tuple[bytes, ...]],
    envp: Sequence[bytes | tuple[bytes, ...]],
    cwd: bytes | None,
    uid: int,
    gid: int,
    groups: Sequence[int] | None,
    stdin: int,
    stdout: int,
    stderr: int,
    /,
) -> tuple[int, int, int]: ...
