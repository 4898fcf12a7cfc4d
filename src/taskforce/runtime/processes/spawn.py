# Over 450 lines: the only module that forks; the vfork and fork paths share their setup.
"""Creating, signalling and identifying processes: the only module that forks.

Processes are created with vfork and exec by a small C extension (taskforce._syscalls) where
it was built, else with fork and exec from Python. Not posix_spawn: the child's own pid
belongs in its argv and environment (`Task_pid`), and only the child knows it before exec.
Each process gets its own session, so that stopping it reaches its whole process group.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C half of `signal`
import contextlib
import errno
import fcntl
import functools
import grp
import os
import pwd
import resource
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from taskforce.core.spec import TASK_PID_MARKER, LaunchSpec
from taskforce.runtime.processes import child_setup
from taskforce.runtime.processes.child_setup import ChildSetup, SetupError

try:
    from taskforce import _syscalls as _vfork
except ImportError:  # built without a C compiler, or not Linux: fork from Python
    _vfork = None  # type: ignore[assignment]

_ALL_SIGNALS = signal.valid_signals()
# The signal module's wrapper turns each returned signal into an enum member, which costs
# more than the fork it guards; the C function is the same one without that.
_sigmask: Callable[[int, Iterable[int]], set[int]] = _signal.pthread_sigmask
_MAX_ERROR = 4096


class SpawnError(Exception):
    """The process could not be created; the message says why, for the log."""


@dataclass(frozen=True, slots=True)
class Credentials:
    uid: int
    gid: int
    groups: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Spawned:
    pid: int
    # Read end of a close-on-exec pipe: EOF means exec succeeded, data is an error report.
    # -1 when the outcome was known at once (vfork): then `error` says what went wrong.
    error_fd: int
    # The program file executed.
    executable: str
    error: str | None = None


def find_program(program: str, env: Mapping[str, str]) -> str:
    """The path to exec for `program`: as given if it has a slash, else found in PATH."""
    if "/" in program:
        if not os.path.exists(program):
            raise SpawnError(f"program {program!r} does not exist")
        return program
    path = env.get("PATH", os.defpath)
    key = (program, path)
    found = _found.get(key)
    # A PATH search costs a stat per directory; a thousand tasks run a handful of
    # programs. The remembered answer is used while it is still an executable file: a
    # program installed earlier in PATH later is found at the next restart after that
    # one disappears, or at once when the cache is cleared by a reload.
    if found is None or not os.access(found, os.X_OK):
        found = _which(program, path)
        if found is None:
            _found.pop(key, None)
            raise SpawnError(f"program {program!r} not found in PATH {path!r}")
        if len(_found) > 4096:
            _found.clear()
        _found[key] = found
    return found


def _which(program: str, path: str) -> str | None:
    # shutil.which, without importing shutil (and the compression modules it imports).
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory or os.curdir, program)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


# (program, PATH) -> the file a PATH search found.
_found: dict[tuple[str, str], str] = {}


def forget_programs() -> None:
    """Search PATH afresh from now on (after a configuration reload)."""
    _found.clear()


def lookup_credentials(user: str | int | None, group: str | int | None) -> Credentials | None:
    """uid, gid and supplementary groups for a task's user/group; None to keep ours."""
    if user is None and group is None:
        return None
    if user is not None:
        try:
            entry = pwd.getpwuid(user) if isinstance(user, int) else _getpwnam(user)
        except KeyError:
            raise SpawnError(f"unknown user {user!r}") from None
        uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
    else:
        uid, gid, name = os.getuid(), os.getgid(), None
    if group is not None:
        gid = _group_id(group)
    groups: tuple[int, ...]
    groups = tuple(os.getgrouplist(name, gid)) if name is not None else (gid,)
    return Credentials(uid, gid, groups)


def _getpwnam(user: str) -> pwd.struct_passwd:
    if user.isdigit():
        return pwd.getpwuid(int(user))
    return pwd.getpwnam(user)


def _group_id(group: str | int) -> int:
    if isinstance(group, int):
        return group
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise SpawnError(f"unknown group {group!r}") from None


def spawn(
    launch: LaunchSpec,
    *,
    stdin: int,
    stdout: int,
    stderr: int,
    argv: Sequence[str] | None = None,
    pid_value: str | None = None,
) -> Spawned:
    """Fork and exec `launch` (or `argv` with its environment) in a new session.

    `pid_value` replaces the Task_pid marker instead of the child's own pid (used for
    commands run on behalf of a running process). Raises SpawnError for problems found
    before forking; problems found in the child are in `error`, or come through `error_fd`.
    """
    job = prepare(launch, stdin=stdin, stdout=stdout, stderr=stderr, argv=argv, pid_value=pid_value)
    return job()


# Creates the process prepared by prepare(); raises SpawnError.
Job = Callable[[], Spawned]


def prepare(
    launch: LaunchSpec,
    *,
    stdin: int,
    stdout: int,
    stderr: int,
    argv: Sequence[str] | None = None,
    pid_value: str | None = None,
    cgroups: Sequence[str] = (),
    fds: Sequence[int] = (),
) -> Job:
    """Everything spawn() does before it forks, done now (SpawnError for the problems it
    finds); the job returned forks and execs. Jobs on the vfork path may run in threads.

    `cgroups`: the cgroup.procs files the child joins before exec; `fds` become the
    child's descriptors 3, 4... in order (held listening sockets)."""
    env = dict(launch.env)
    words = list(argv if argv is not None else launch.argv)
    executable = find_program(words[0] if argv is not None else launch.program, env)
    creds = lookup_credentials(launch.user, launch.group)
    if creds is not None:
        env["Task_uid"] = str(creds.uid)
        env["Task_gid"] = str(creds.gid)
    if launch.cwd is not None and not os.path.isdir(launch.cwd):
        raise SpawnError(f"cwd {launch.cwd!r} is not a directory")
    if pid_value is not None:
        words = [w.replace(TASK_PID_MARKER, pid_value) for w in words]
        env = {k: v.replace(TASK_PID_MARKER, pid_value) for k, v in env.items()}
    stdio = (stdin, stdout, stderr)
    no_new_privs = launch.no_new_privs
    try:
        setup = child_setup.setup_for(launch.limits, cgroups)
    except SetupError as exc:
        raise SpawnError(str(exc)) from None
    if _vfork is not None and use_vfork:
        return _vfork_job(
            executable, words, env, launch.cwd, creds, stdio, no_new_privs, setup, tuple(fds)
        )
    drop = _no_new_privs_setter() if no_new_privs else None
    return functools.partial(
        _fork, executable, words, env, launch.cwd, creds, stdio, setup, drop, tuple(fds)
    )


# Fewer starts than this at once run on the calling thread: threads are not worth it.
_PARALLEL_FROM = 16
# Threads a burst of vfork jobs runs on.
SPAWN_THREADS = 2


def begin_jobs(jobs: Sequence[Job]) -> Callable[[], list[Spawned | SpawnError]]:
    """Run `jobs`: a burst of vfork jobs on threads of its own while the caller goes on,
    fewer (or fork jobs) at once on the calling thread. The function returned waits for
    them, and gives each one's outcome in order.

    vfork's caller waits, without the GIL, while the kernel sets up the child and the
    child gets a CPU to exec on: on threads, those waits overlap each other and whatever
    the caller does meanwhile (it prepares the next slice). The threads take the next job
    from one shared counter: no Future, lock or queue per job.
    """
    if _vfork is None or not use_vfork or len(jobs) < _PARALLEL_FROM:
        done = [_run(job) for job in jobs]
        return lambda: done
    import threading  # imported by asyncio already

    results: list[Spawned | SpawnError | None] = [None] * len(jobs)
    pending = iter(range(len(jobs)))  # next() on it is atomic under the GIL
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for index in pending:
                results[index] = _run(jobs[index])
        except BaseException as exc:  # a bug: raised again by wait()
            failures.append(exc)

    threads = [
        threading.Thread(target=work, name="taskforce-spawn", daemon=True)
        for _ in range(SPAWN_THREADS)
    ]
    for thread in threads:
        thread.start()

    def wait() -> list[Spawned | SpawnError]:
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        return [result for result in results if result is not None]

    return wait


def _run(job: Job) -> Spawned | SpawnError:
    try:
        return job()
    except SpawnError as exc:
        return exc


def _fork(
    executable: str,
    words: list[str],
    env: dict[str, str],
    cwd: str | None,
    creds: Credentials | None,
    stdio: tuple[int, int, int],
    setup: ChildSetup,
    no_new_privs: Callable[[], None] | None = None,
    fds: tuple[int, ...] = (),
) -> Spawned:
    marked = any(TASK_PID_MARKER in w for w in words) or any(
        TASK_PID_MARKER in v for v in env.values()
    )
    try:
        read_fd, write_fd = os.pipe()
    except OSError as exc:
        raise SpawnError(f"cannot create a pipe: {_shortage(exc)}") from None
    old_mask = _sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)
    try:
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(read_fd)
            raise SpawnError(f"cannot fork: {_shortage(exc)}") from None
        if pid == 0:  # pragma: no cover - runs in the child, which execs or exits
            _become(
                executable,
                words,
                env,
                marked,
                cwd,
                creds,
                write_fd,
                stdio,
                setup,
                no_new_privs,
                fds,
            )
    finally:
        _sigmask(signal.SIG_SETMASK, old_mask)
        os.close(write_fd)
    return Spawned(pid, read_fd, executable)


# Set to False to spawn with fork from Python even where the C extension exists (tests).
use_vfork = True


_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def _vfork_job(
    executable: str,
    words: list[str],
    env: dict[str, str],
    cwd: str | None,
    creds: Credentials | None,
    stdio: tuple[int, int, int],
    no_new_privs: bool,
    setup: ChildSetup,
    fds: tuple[int, ...] = (),
) -> Job:
    assert _vfork is not None
    spawn_c = _vfork.spawn
    args = (
        executable.encode(_FS_ENCODING, _FS_ERRORS),
        # str: the C side encodes them, and puts the child's pid where the marker is.
        words,
        list(map("=".join, env.items())),
        None if cwd is None else cwd.encode(_FS_ENCODING, _FS_ERRORS),
        -1 if creds is None else creds.uid,
        -1 if creds is None else creds.gid,
        None if creds is None else creds.groups,
        *stdio,
        no_new_privs,
        setup.for_c(),
        fds,
    )

    def job() -> Spawned:
        try:
            pid, step, err, index = spawn_c(*args)
        except OSError as exc:
            raise SpawnError(f"cannot fork: {_shortage(exc)}") from None
        except ValueError as exc:  # an embedded null byte
            raise SpawnError(str(exc)) from None
        if step < 0:
            return Spawned(pid, -1, executable)
        # The same words as the fork path's report (_become), by step of _syscalls.c.
        words = (
            "preparing",
            "redirecting stdio",
            f"changing directory to {cwd!r}",
            "" if creds is None else f"switching to uid {creds.uid} gid {creds.gid}",
            "setting no_new_privs",
            f"executing {executable!r}",
        )
        doing = words[step] if step < len(words) else setup.failure(_C_SETUP_STEPS[step], index)
        return Spawned(pid, -1, executable, f"{doing}: {os.strerror(err)}")

    return job


# The steps of _syscalls.c by number (those past EXECUTING), as ChildSetup.failure names them.
_C_SETUP_STEPS = ("",) * 6 + ("cgroup", "rlimit", "nice", "oom_score_adj")


def _become(
    executable: str,
    argv: list[str],
    env: dict[str, str],
    marked: bool,
    cwd: str | None,
    creds: Credentials | None,
    error_fd: int,
    stdio: tuple[int, int, int],
    setup: ChildSetup,
    no_new_privs: Callable[[], None] | None,
    fds: tuple[int, ...] = (),
) -> None:  # pragma: no cover - child side
    """In the child: become the task, or report why not and exit 127."""
    step = "preparing"
    try:
        # Signals were blocked around fork: the handlers inherited from the parent must
        # never run here (they would write to the parent's wake-up pipe).
        signal.set_wakeup_fd(-1)
        # Every handler and every SIG_IGN goes, as on the vfork path: exec keeps ignored
        # dispositions (SIGPIPE from Python, SIGHUP under nohup, SIGQUIT in a shell's
        # background job). getsignal() makes no system call.
        for signum in _ALL_SIGNALS:
            if signal.getsignal(signum) not in (signal.SIG_DFL, None):
                signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        if marked:
            mine = str(os.getpid())
            argv = [w.replace(TASK_PID_MARKER, mine) for w in argv]
            env = {k: v.replace(TASK_PID_MARKER, mine) for k, v in env.items()}
        os.setsid()
        step = "redirecting stdio"
        # Passed descriptors go to 3, 4...: first out of the way of that range (and of
        # stdio), with the error pipe.
        above = 3 + len(fds)
        if fds:
            fds = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, above) for fd in fds)
            error_fd = fcntl.fcntl(error_fd, fcntl.F_DUPFD_CLOEXEC, above)
        for target, fd in enumerate(stdio):
            if fd != target:
                os.dup2(fd, target)
        for target, fd in enumerate(fds, 3):
            os.dup2(fd, target)  # inheritable: it stays open across exec
        os.closerange(above, error_fd)
        os.closerange(error_fd + 1, _fd_limit())
        child_setup.apply(setup)
        if cwd is not None:
            step = f"changing directory to {cwd!r}"
            os.chdir(cwd)
        if creds is not None:
            step = f"switching to uid {creds.uid} gid {creds.gid}"
            os.setgroups(list(creds.groups))
            os.setgid(creds.gid)
            os.setuid(creds.uid)
        if no_new_privs is not None:
            step = "setting no_new_privs"
            no_new_privs()
        step = f"executing {executable!r}"
        os.execve(executable, argv, env)
    except BaseException as exc:
        if isinstance(exc, child_setup.SetupStepError):
            step, exc = exc.step, exc.cause
        with contextlib.suppress(BaseException):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            os.write(error_fd, f"{step}: {reason}".encode(errors="replace")[:_MAX_ERROR])
    finally:
        os._exit(127)


def _no_new_privs_setter() -> Callable[[], None]:
    """prctl(PR_SET_NO_NEW_PRIVS) for the fork path's child: from the C extension, else
    through ctypes (loaded here, in the parent: a child must not import)."""
    if _vfork is not None:
        return _vfork.set_no_new_privs
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs = 38

    def set_no_new_privs() -> None:
        if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))

    return set_no_new_privs


def _shortage(exc: OSError) -> str:
    """Say which limit an OSError of pipe() or fork() ran into, and what to raise."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EMFILE:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return f"{reason}: taskforce has reached its limit of {soft} (raise `ulimit -n`)"
    if exc.errno == errno.ENFILE:
        return f"{reason}: the system-wide limit is reached (the sysctl fs.file-max)"
    if exc.errno == errno.EAGAIN:
        return f"{reason}: the process limit is reached (`ulimit -u`, or the cgroup's pids.max)"
    return reason


def _fd_limit() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        return 1024


def read_spawn_error(fd: int) -> str | None:
    """Read a child's error report (non-blocking), or None when exec succeeded."""
    try:
        data = os.read(fd, _MAX_ERROR)
    except BlockingIOError:
        return None
    return data.decode(errors="replace") if data else None


def signal_group(pid: int, signum: int, *, or_process: bool = False) -> bool:
    """Signal the process group led by `pid`; False if nothing was there.

    With `or_process`, a `pid` that leads no group (a daemon found through its pidfile)
    is signalled alone. Never use that for a pid already reaped: it may be recycled.
    """
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        if not or_process:
            return False
        return signal_process(pid, signum)
    except PermissionError:
        # The leader may have left its group (setsid in the task); reach the process.
        return signal_process(pid, signum)
    return True


def signal_process(pid: int, signum: int) -> bool:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def become_subreaper() -> bool:
    """Make orphaned descendants ours to reap (Linux); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    if _vfork is not None:
        try:
            _vfork.become_subreaper()
        except OSError:
            return False
        return True
    import ctypes  # only without the C extension: ctypes costs memory
    import ctypes.util

    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        pr_set_child_subreaper = 36
        return int(libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def split_status(status: int) -> tuple[int | None, int | None]:
    """A wait status as (exit code, terminating signal): one of them is None, or both
    when the status is unknown (a process that was not our child) or neither."""
    if status < 0:
        return None, None
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None


def describe_status(status: int) -> str:
    """A wait status in words: 'exited 2', 'killed by SIGKILL'."""
    if status < 0:
        return "exited (status unknown: not a child of taskforce)"
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        core = " (core dumped)" if os.WCOREDUMP(status) else ""
        return f"killed by {name}{core}"
    if os.WIFEXITED(status):
        return f"exited {os.WEXITSTATUS(status)}"
    return f"status {status:#x}"
