"""The library entry point: supervise the tasks of a configuration file.

The specification calls this class `legion`. A program creates one with a configuration
file and (optionally) a roles file, then calls :meth:`Legion.manage`, which runs until
the legion is stopped (SIGTERM, SIGINT or :meth:`Legion.stop`) or reset (SIGHUP or
:meth:`Legion.reset`), stopping every task on the way out.

While it runs, the configuration and roles files are watched: a change is loaded,
resolved and applied as the difference from what runs; a new configuration that cannot
be used is reported and the running one stays in force.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from taskforce.config import lint
from taskforce.config.errors import ConfigError, Mark, Problem
from taskforce.config.host import HostFacts
from taskforce.config.include import Composer, Composition
from taskforce.config.load import is_dev_null, read_file
from taskforce.config.model import Config, Pick
from taskforce.config.resolve import resolve
from taskforce.config.reuse import ResolveCache
from taskforce.config.roles import Roles, parse_roles
from taskforce.config.shapes import Memo
from taskforce.config.yaml_source import Document
from taskforce.core import snapshot
from taskforce.core.diff import changed_tasks
from taskforce.core.planner import ExitOutcome
from taskforce.core.spec import DesiredState, Policy
from taskforce.core.vocabulary import Control, EventType
from taskforce.runtime import memory, paths
from taskforce.runtime.events import TaskEvents, python_script
from taskforce.runtime.process import (
    SpawnError,
    find_program,
    forget_programs,
    lookup_credentials,
)
from taskforce.runtime.records import Records
from taskforce.runtime.sources import TextSource
from taskforce.runtime.supervisor import Outcome, Supervisor
from taskforce.runtime.upgrade import precheck_argv, read_snapshot, taskforce_files, write_snapshot
from taskforce.watch import FileWatcher, listing

log = logging.getLogger("taskforce")


@dataclass(frozen=True, slots=True)
class Loaded:
    config: Config
    roles: Roles | None
    desired: DesiredState
    problems: tuple[Problem, ...]  # tasks left out because they could not be resolved
    data: object = None  # the document as loaded (plain data), for status
    # In-scope tasks whose entry could not be resolved, with why: shown in status. One
    # that ran before keeps running as it was.
    refused: Mapping[str, str] = field(default_factory=dict)


class Legion:
    """Supervise the tasks described by `config_file`.

    `roles_file` names the roles file; None turns role processing off (every task is in
    scope). A roles file that does not exist (yet) means no role is active.
    `environ` is the base of every task's context (default: this process's environment).
    """

    def __init__(
        self,
        config_file: str,
        roles_file: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        host: HostFacts | None = None,
        force_polling: bool = False,
        state_file: str | None = "",
        watch_self: bool = False,
        upgrade_snapshot: str | None = None,
        config_source: TextSource | None = None,
        roles_source: TextSource | None = None,
        exit_with: str | None = None,
    ) -> None:
        self.config_file = os.path.abspath(config_file)
        self.roles_file = os.path.abspath(roles_file) if roles_file is not None else None
        self.environ = dict(os.environ if environ is None else environ)
        self.host = host or HostFacts.from_system()
        self.force_polling = force_polling
        # Records of running processes for the next taskforce ("" = the default place,
        # None = keep none).
        self.state_file = state_file
        # Re-execute in place (keeping the tasks) when taskforce's own code changes.
        self.watch_self = watch_self
        # Set by the image that exec'd us: the state it handed over.
        self.upgrade_snapshot = upgrade_snapshot
        # Set when serve() returns Outcome.UPGRADE: the snapshot for the next image.
        self.handover_snapshot: str | None = None
        self._own_code: frozenset[str] = frozenset()
        self._upgrade_timer: asyncio.TimerHandle | None = None
        self._upgrading = False
        self.loaded: Loaded | None = None
        # What the last load validated and resolved: a reload redoes only what changed.
        self._memo = Memo()
        self._resolved = ResolveCache()
        # The main file and the files it includes, each read again only when changed.
        self._composer = Composer(self.config_file, self._memo)
        # The most recent configuration that could not be applied, until one can.
        self.reload_error: ConfigError | None = None
        self.reloads = 0
        self.reload_errors = 0
        self._supervisor: Supervisor | None = None
        self._pending: Outcome | None = None
        self._watcher: FileWatcher | None = None
        self._events: TaskEvents | None = None
        self._watched: frozenset[str] = frozenset()
        self._reload_scheduled = False
        # Temporary changes made through the control API, task -> field -> value; the
        # next configuration event drops them.
        self.overrides: dict[str, dict[str, object]] = {}
        # Text from elsewhere than the files (the fleet's etcd keys), when given.
        self.config_source = config_source
        self.roles_source = roles_source
        # Applied to every resolved desired state (the fleet keeps cluster-wide tasks to
        # the host that holds them).
        self.desired_filter: Callable[[DesiredState], DesiredState] | None = None
        # The task whose own exit ends the legion (a container's main process), and the
        # status it ended with, for taskforce to exit with.
        self.exit_with = exit_with
        self.exit_status: int | None = None

    # ----- loading --------------------------------------------------------------------

    def read_roles(self, previous: Roles | None = None) -> Roles | None:
        """The active roles; a file that vanished while running keeps `previous`."""
        if self.roles_source is not None:
            return parse_roles(self.roles_source.read(), self.roles_source.name)
        if self.roles_file is None:
            return None
        try:
            data = read_file(self.roles_file)
        except FileNotFoundError:
            if previous is not None:
                log.warning("roles file %s is missing: keeping roles as they were", self.roles_file)
                return previous
            log.warning("roles file %s does not exist: no role is active", self.roles_file)
            return Roles(())
        return parse_roles(data, self.roles_file)

    def load(self, previous: Loaded | None = None, text: str | None = None) -> Loaded:
        """Read and resolve the configuration and roles; ConfigError if unusable.

        `text` replaces the configuration file's content (to see what it would do).
        """
        # Loading allocates hundreds of thousands of small acyclic objects: the cyclic
        # collector would walk the whole heap many times over for nothing.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._load(previous, text)
        finally:
            if collecting:
                gc.enable()
            self._refresh_watches()  # the files read may have changed

    def _compose(self, text: str | None = None) -> Composition:
        source = self.config_source
        if text is None and source is not None:
            text = source.read().decode("utf-8", "replace")
        return self._composer.compose(text, source.name if source is not None else None)

    def warnings(self) -> tuple[Problem, ...]:
        """Likely mistakes that do not stop the configuration from loading (see
        :mod:`taskforce.config.lint`): what `-C` adds to the problems."""
        try:
            composition = self._compose()
        except ConfigError:
            return ()  # check() reports it
        # Names from environment files and included files' scopes are defined too.
        known = {**dict.fromkeys(composition.names, ""), **self.environ}
        return tuple(lint.warnings(composition.document, known))

    def _load(self, previous: Loaded | None, text: str | None) -> Loaded:
        composition = self._compose(text)
        document = composition.document
        config = _with_overrides(composition.config, self.overrides)
        roles = self.read_roles(previous.roles if previous is not None else None)
        desired, problems = resolve(config, roles, self.environ, self.host, self._resolved)
        refused = _refused(config, desired, problems)
        if refused and previous is not None:
            desired = _keep_previous(desired, previous.desired, refused)
        if self.desired_filter is not None:
            desired = self.desired_filter(desired)
        problems = (*_placed(problems, document, config), *self._advice(desired))
        return Loaded(config, roles, desired, tuple(problems), composition, refused)

    def _advice(self, desired: DesiredState) -> list[Problem]:
        """Problems that do not keep a task from being tried (it fails and is retried)."""
        return [*self._check_identities(desired), *self._check_python_events(desired)]

    def _check_identities(self, desired: DesiredState) -> list[Problem]:
        problems = []
        for spec in desired.tasks.values():
            launch = spec.instances[0].launch if spec.instances else None
            if launch is None or (launch.user is None and launch.group is None):
                continue
            try:
                lookup_credentials(launch.user, launch.group)
            except SpawnError as exc:
                where = "user" if launch.user is not None and "user" in str(exc) else "group"
                problems.append(
                    Problem(self.config_file, None, f"tasks.{spec.name}.{where}", str(exc))
                )
        return problems

    def _check_python_events(self, desired: DesiredState) -> list[Problem]:
        problems = []
        for spec in desired.tasks.values():
            if not spec.events or not any(e.type is EventType.PYTHON for e in spec.events):
                continue
            launch = spec.instances[0].launch if spec.instances else None
            if launch is None:
                continue
            try:
                executable = find_program(launch.program, dict(launch.env))
            except SpawnError:
                continue  # reported when the task starts
            if python_script(launch, executable) is None:
                problems.append(
                    Problem(
                        self.config_file,
                        None,
                        f"tasks.{spec.name}.events",
                        f"a python event needs a Python script, and {executable} is not one",
                    )
                )
        return problems

    def check(self) -> tuple[Problem, ...]:
        """Every problem in the configuration and roles file (empty when all is well)."""
        try:
            return self.load().problems
        except ConfigError as exc:
            return exc.problems

    # ----- running --------------------------------------------------------------------

    def manage(self) -> Outcome:
        """Run until stopped or reset; returns which."""
        return asyncio.run(self.serve())

    def manage_with(self, on_ready: Callable[[], None] | None = None) -> Outcome:
        """manage(), calling `on_ready` once the configuration is loaded and tasks start."""
        return asyncio.run(self.serve(on_ready))

    async def serve(
        self, on_ready: Callable[[], None] | None = None, loaded: Loaded | None = None
    ) -> Outcome:
        """Supervise until stopped; `loaded` is the configuration if just read (once only)."""
        if loaded is None:
            loaded = self.load()
        if self.exit_with is not None and self.exit_with not in loaded.desired.tasks:
            in_scope = ", ".join(sorted(loaded.desired.tasks)) or "none"
            raise ConfigError(
                [
                    Problem(
                        "--exit-with",
                        None,
                        "",
                        f"no task named {self.exit_with!r} in {self.config_file} "
                        f"(tasks in scope: {in_scope})",
                    )
                ]
            )
        self._report(loaded)
        self.loaded = loaded
        loop = asyncio.get_running_loop()
        supervisor = Supervisor(loaded.desired, Records(self._state_path()))
        self._supervisor = supervisor
        self._restore_snapshot(supervisor)
        if self.watch_self:
            self._own_code = frozenset(taskforce_files())
        self._events = TaskEvents(supervisor, os.path.dirname(self.config_file))
        self._watcher = FileWatcher(loop, self._on_files_changed, force_polling=self.force_polling)
        supervisor.on_change = self._refresh_watches
        supervisor.on_upgrade = self.upgrade
        if self.exit_with is not None:
            supervisor.on_exit = self._exited
        self._refresh_watches()
        memory.give_back()
        for source in (self.config_source, self.roles_source):
            if source is not None:
                source.watch(self._source_changed)
        if self._pending is not None:
            supervisor.stop(self._pending)
        if on_ready is not None:
            loop.call_soon(on_ready)
        try:
            return await supervisor.run()
        finally:
            for source in (self.config_source, self.roles_source):
                if source is not None:
                    await source.close()
            if self._upgrade_timer is not None:
                self._upgrade_timer.cancel()
            self._watcher.close()
            self._watcher = None
            self._supervisor = None

    def _exited(self, outcome: ExitOutcome) -> None:
        """The --exit-with task's process ended on its own (not stopped by us): stop the
        others, and exit with its status."""
        if (
            outcome.task != self.exit_with
            or outcome.record.expected
            or self.exit_status is not None
        ):
            return
        self.exit_status = exit_status(outcome.record.status, outcome.record.error)
        log.info(
            "%s exited (exit status %d): stopping every task (--exit-with)",
            outcome.task,
            self.exit_status,
        )
        self.stop()

    def _state_path(self) -> str | None:
        if self.state_file != "":
            return self.state_file
        try:
            paths.ensure_private_dir(paths.runtime_dir())
        except (OSError, paths.UnsafePathError) as exc:
            log.warning("not keeping process records: %s", exc)
            return None
        return paths.default_state_file(None, self.config_file)

    def stop(self) -> None:
        """Stop all tasks and make manage() return Outcome.STOPPED (call from the loop)."""
        self._request(Outcome.STOPPED)

    def reset(self) -> None:
        """Stop all tasks and make manage() return Outcome.RESET."""
        self._request(Outcome.RESET)

    def reload(self, keep_overrides: bool = False, announce: bool = True) -> bool:
        """Load the configuration and roles again and apply the difference.

        Returns False (and keeps the running configuration) when the new one is unusable.
        Overrides made through the control API are dropped unless `keep_overrides`. Without
        `announce`, the changes are not logged as a reload: the caller logs what it did.
        """
        supervisor = self._supervisor
        if supervisor is None or supervisor.planner.shutting_down:
            return False
        if not keep_overrides:
            self.overrides.clear()
        try:
            loaded = self.load(self.loaded)
        except ConfigError as exc:
            self.reload_error = exc
            self.reload_errors += 1
            for problem in exc.problems:
                log.error("%s", problem)
            log.error("new configuration not applied: the running configuration stays in force")
            supervisor.emit(
                "reload_failed",
                None,
                "; ".join(str(p) for p in exc.problems),
            )
            return False
        self.reload_error = None
        self.reloads += 1
        forget_programs()
        previous = self.loaded
        self.loaded = loaded
        memory.give_back()
        for problem in loaded.problems:
            log.error("%s", problem)
        if previous is not None:
            for name in loaded.refused:
                if name in previous.desired.tasks:
                    log.error("%s: its new entry cannot be used: it stays as it was", name)
        if previous is not None and announce:
            self._log_changes(previous.desired, loaded.desired)
        supervisor.set_desired(loaded.desired)
        return True

    def _request(self, outcome: Outcome) -> None:
        if self._supervisor is None:
            self._pending = outcome
        else:
            self._supervisor.stop(outcome)

    @property
    def supervisor(self) -> Supervisor | None:
        return self._supervisor

    @property
    def watcher(self) -> FileWatcher | None:
        return self._watcher

    # ----- watching -------------------------------------------------------------------

    def _own_files(self) -> frozenset[str]:
        # A configuration from elsewhere (etcd) says itself when it changes; the file is
        # only its local copy.
        own = set() if self.config_source is not None else {self.config_file}
        if self.roles_file is not None and self.roles_source is None:
            own.add(self.roles_file)
        own |= self._composer.watched_files()  # included and environment files
        # /dev/null is read once as empty: every write to it by anyone would look like a
        # change.
        own = {p for p in own if not is_dev_null(p)}
        # The directories whose entries include patterns read.
        own.update(listing(directory) for directory in self._composer.watched_dirs())
        return frozenset(own) | self._own_code

    def _refresh_watches(self) -> None:
        if self._watcher is None or self._events is None:
            return
        paths = frozenset(self._events.watched()) | self._own_files()
        if paths != self._watched:
            self._watched = paths
            self._watcher.set_paths(paths)

    def _on_files_changed(self, paths: frozenset[str]) -> None:
        self._composer.changed(paths)
        if paths & self._own_code:
            self._schedule_upgrade(sorted(paths & self._own_code)[0])
        config_files = self._own_files() - self._own_code
        if paths & config_files and not self._reload_scheduled:
            self._reload_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_reload)
        if self._events is not None:
            self._events.fire(paths)

    def _source_changed(self) -> None:
        if not self._reload_scheduled:
            self._reload_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_reload)

    def _scheduled_reload(self) -> None:
        self._reload_scheduled = False
        log.info("configuration or roles file changed: reloading")
        self.reload()

    # ----- hitless self-restart -------------------------------------------------------

    def upgrade(self) -> bool:
        """Re-execute taskforce in place, keeping every task running.

        The new code is tried first in a separate process; if it cannot even be
        imported, the upgrade is abandoned (logged) and nothing changes. Returns whether
        the upgrade was set in motion.
        """
        supervisor = self._supervisor
        if supervisor is None or self._upgrading or supervisor.planner.shutting_down:
            return False
        self._upgrading = True
        argv = precheck_argv()
        if not supervisor.run_command(argv, "upgrade check", self._prechecked):
            self._upgrading = False
            return False
        log.info("upgrade: checking that the new code starts")
        return True

    def _schedule_upgrade(self, changed: str) -> None:
        # A package upgrade rewrites many files: act once they have been quiet a while.
        if self._upgrade_timer is not None:
            self._upgrade_timer.cancel()
        log.info("taskforce's own code changed (%s): upgrading in place when quiet", changed)
        self._upgrade_timer = asyncio.get_running_loop().call_later(1.0, self._quiet_upgrade)

    def _quiet_upgrade(self) -> None:
        self._upgrade_timer = None
        self.upgrade()

    def _prechecked(self, status: int) -> None:
        if status != 0:
            self._upgrading = False
            log.error(
                "upgrade abandoned: the new code does not start (status %d); still running", status
            )
            return
        self._hand_over(attempts=200)

    def _hand_over(self, attempts: int) -> None:
        supervisor = self._supervisor
        if supervisor is None:
            return
        if supervisor.busy() and attempts > 0:
            # Wait for stops and starts in flight to finish: they are not in the snapshot.
            asyncio.get_running_loop().call_later(0.05, self._hand_over, attempts - 1)
            return
        try:
            path = write_snapshot(
                supervisor.planner,
                {"reloads": self.reloads, "output": supervisor.output.hand_over()},
            )
        except (OSError, paths.UnsafePathError) as exc:
            self._upgrading = False
            log.error("upgrade abandoned: cannot write the snapshot: %s", exc)
            return
        self.handover_snapshot = path
        log.info(
            "upgrade: handing %d process(es) over to the new image",
            len(list(supervisor.planner.pids())),
        )
        supervisor.hand_over()

    def _restore_snapshot(self, supervisor: Supervisor) -> None:
        if self.upgrade_snapshot is None:
            return
        data = read_snapshot(self.upgrade_snapshot)
        self.upgrade_snapshot = None
        if data is None:
            return
        try:
            pids = snapshot.restore(supervisor.planner, data["planner"])
        except (KeyError, TypeError, ValueError) as exc:
            log.error("cannot restore the upgrade snapshot: %s", exc)
            return
        self.reloads = int(data.get("reloads", 0))
        supervisor.output.take_over(data.get("output", {}))
        log.info("upgrade: took over %d running process(es)", len(pids))

    # ----- logging --------------------------------------------------------------------

    @staticmethod
    def _log_changes(old: DesiredState, new: DesiredState) -> None:
        changes = changed_tasks(old, new)
        if not changes:
            log.info("configuration reloaded: nothing changed")
            return
        for change in changes:
            log.info("configuration reloaded: %s", change)

    @staticmethod
    def _report(loaded: Loaded) -> None:
        for problem in loaded.problems:
            log.error("%s", problem)
        names = ", ".join(loaded.roles.names) if loaded.roles is not None else None
        log.info(
            "%d task(s) in scope%s",
            len(loaded.desired.tasks),
            f" for roles {names or '(none)'}" if loaded.roles is not None else "",
        )


def exit_status(status: int, error: str | None = None) -> int:
    """A process's wait status as a shell's exit status: its exit code, 128+N when killed
    by signal N; 127 when it could not be started, 1 when its status is not known."""
    if error is not None:
        return 127
    try:
        code = os.waitstatus_to_exitcode(status)
    except ValueError:
        return 1
    return code if code >= 0 else 128 - code


def _with_overrides(config: Config, overrides: Mapping[str, Mapping[str, object]]) -> Config:
    if not overrides:
        return config
    tasks = dict(config.tasks)
    for name, changes in overrides.items():
        task = tasks.get(name)
        if task is None:
            continue
        control = changes.get("control", task.control)
        count = changes.get("count", task.count)
        assert isinstance(control, Control | Pick) and isinstance(count, int | str | Pick)
        tasks[name] = replace(task, control=control, count=count)
    return replace(config, tasks=tasks)


def _placed(problems: Iterable[Problem], document: Document, config: Config) -> list[Problem]:
    """Give problems found while resolving the position of the task they concern."""
    placed = []
    for problem in problems:
        if problem.mark is None and (name := _task_of(problem, config)) is not None:
            rest = problem.path[len("tasks.") :]
            tail = rest[len(name) + 1 :].split(".")[0].split("[")[0]
            at: tuple[str | int, ...] = ("tasks", name, tail) if tail else ("tasks", name)
            problem = replace(problem, source=document.source_at(at), mark=document.mark_of(at))
        elif problem.mark is None and problem.path.startswith("settings."):
            # settings.stop_timeout, settings.restart.factor: no list indexes there.
            problem = replace(problem, mark=document.mark_of(tuple(problem.path.split("."))))
        placed.append(problem)
    return placed


def _task_of(problem: Problem, config: Config) -> str | None:
    """The task a problem's key path is in (None for a top-level key)."""
    if not problem.path.startswith("tasks."):
        return None
    rest = problem.path[len("tasks.") :]
    names = [n for n in config.tasks if rest == n or rest.startswith(n + ".")]
    return max(names, key=len) if names else None


def _refused(config: Config, desired: DesiredState, problems: Iterable[Problem]) -> dict[str, str]:
    """Each in-scope task that resolving left out, with its problems (a task without one
    of its own was left out by a top-level key's)."""
    missing = [n for n in config.tasks if n not in desired.tasks and n not in desired.out_of_scope]
    if not missing:
        return {}
    own: dict[str | None, list[str]] = {}
    for problem in problems:
        own.setdefault(_task_of(problem, config), []).append(f"{problem.path}: {problem.message}")
    return {
        name: "; ".join(own.get(name) or own.get(None) or ["cannot resolve"]) for name in missing
    }


def _keep_previous(
    desired: DesiredState, previous: DesiredState, refused: Mapping[str, str]
) -> DesiredState:
    """`desired` with the tasks it refused that ran before kept as they were: a mistake
    in a task's new entry never stops what runs."""
    kept = {name: previous.tasks[name] for name in refused if name in previous.tasks}
    if not kept:
        return desired
    return replace(desired, tasks={**desired.tasks, **kept})


__all__ = ["ConfigError", "Legion", "Loaded", "Mark", "Outcome", "Policy", "Problem"]
