from collections.abc import Sequence

def spawn(
    path: bytes,
    argv: Sequence[str | bytes | tuple[bytes, ...]],
    envp: Sequence[str | bytes | tuple[bytes, ...]],
    cwd: bytes | None,
    uid: int,
    gid: int,
    groups: Sequence[int] | None,
    stdin: int,
    stdout: int,
    stderr: int,
    no_new_privs: bool,
    setup: tuple[
        Sequence[bytes], Sequence[tuple[int, int, int, bool]], int, int | None, bytes | None
    ],
    fds: Sequence[int] = ...,
    /,
) -> tuple[int, int, int, int]: ...
def become_subreaper() -> None: ...
def set_no_new_privs() -> None: ...
def inotify_init() -> int: ...
def inotify_add_watch(fd: int, path: str | bytes, mask: int, /) -> int: ...
def inotify_rm_watch(fd: int, wd: int, /) -> None: ...
def trim() -> bool: ...
def read_usage(
    proc: str,
    files: Sequence[tuple[str, str]],
    items: Sequence[tuple[int, str | None, int, int, int]],
    threads: int,
    /,
) -> list[tuple[float | None, int | None, tuple[float | None, int | None, int] | None]]: ...
