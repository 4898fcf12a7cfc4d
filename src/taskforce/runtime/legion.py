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
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import replace

from taskforce.config.errors import ConfigError, Mark, Problem
from taskforce.config.host import HostFacts
from taskforce.config.load import is_dev_null, read_file
from taskforce.config.pipeline import Loaded, Pipeline
from taskforce.config.roles import Roles, parse_roles
from taskforce.core.diff import changed_tasks
from taskforce.core.planner import ExitOutcome
from taskforce.core.spec import DesiredState, Policy
from taskforce.runtime.host_checks import HostChecks
from taskforce.runtime.loop.supervisor import Outcome, Supervisor
from taskforce.runtime.loop.task_events import TaskEvents
from taskforce.runtime.own import memory, paths
from taskforce.runtime.processes.records import Records
from taskforce.runtime.processes.spawn import forget_programs
from taskforce.runtime.sources import TextSource
from taskforce.runtime.upgrade import Upgrade
from taskforce.watch import FileWatcher, listing

log = logging.getLogger("taskforce")


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
        # `upgrade_snapshot`: set by the image that exec'd us, the state it handed over.
        self._upgrade = Upgrade(upgrade_snapshot)
        self.loaded: Loaded | None = None
        # What the last load validated and resolved: a reload redoes only what changed.
        # The main file and the files it includes, each read again only when changed.
        self._pipeline = Pipeline(self.config_file)
        self._host_checks = HostChecks()
        self._own: tuple[tuple[int, frozenset[str]], frozenset[str]] | None = None
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

    @property
    def handover_snapshot(self) -> str | None:
        """Once serve() returned Outcome.UPGRADE: the snapshot for the next image."""
        return self._upgrade.handover_snapshot

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
        try:
            loaded = self._pipeline.run(
                *self._text(text),
                lambda: self.read_roles(previous.roles if previous is not None else None),
                self.environ,
                self.host,
                overrides=self.overrides,
                previous=previous,
                desired_filter=self.desired_filter,
            )
        finally:
            self._refresh_watches()  # the files read may have changed
        advice = self._host_checks.problems(loaded.desired, self.config_file)
        return replace(loaded, problems=(*loaded.problems, *advice))

    def _text(self, text: str | None = None) -> tuple[str | None, str | None]:
        """The main file's text and name when not read from disk (None, None: read it)."""
        source = self.config_source
        if text is None and source is not None:
            text = source.read().decode("utf-8", "replace")
        return text, source.name if source is not None else None

    def warnings(self) -> tuple[Problem, ...]:
        """Likely mistakes that do not stop the configuration from loading (see
        :mod:`taskforce.config.lint`): what `-C` adds to the problems."""
        try:
            return self._pipeline.warnings(*self._text(), self.environ)
        except ConfigError:
            return ()  # check() reports it

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
        restored = self._upgrade.attach(supervisor, self.watch_self, self._handed_over)
        if restored:
            self.reloads = int(restored.get("reloads", 0))
        self._events = TaskEvents(supervisor, os.path.dirname(self.config_file))
        self._watcher = FileWatcher(loop, self._on_files_changed, force_polling=self.force_polling)
        supervisor.on_change = self._refresh_watches
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
            self._upgrade.detach()
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
        # Asked after every planning pass: made again only after another composition.
        key = (self._pipeline.composer.runs, self._upgrade.own_code)
        if self._own is None or self._own[0] != key:
            self._own = (key, self._list_own_files())
        return self._own[1]

    def _list_own_files(self) -> frozenset[str]:
        # A configuration from elsewhere (etcd) says itself when it changes; the file is
        # only its local copy.
        own = set() if self.config_source is not None else {self.config_file}
        if self.roles_file is not None and self.roles_source is None:
            own.add(self.roles_file)
        own |= self._pipeline.composer.watched_files()  # included and environment files
        # /dev/null is read once as empty: every write to it by anyone would look like a
        # change.
        own = {p for p in own if not is_dev_null(p)}
        # The directories whose entries include patterns read.
        own.update(listing(directory) for directory in self._pipeline.composer.watched_dirs())
        return frozenset(own) | self._upgrade.own_code

    def _refresh_watches(self) -> None:
        if self._watcher is None or self._events is None:
            return
        paths = frozenset(self._events.watched()) | self._own_files()
        if paths != self._watched:
            self._watched = paths
            self._watcher.set_paths(paths)

    def _on_files_changed(self, paths: frozenset[str]) -> None:
        self._pipeline.composer.changed(paths)
        own_code = self._upgrade.own_code
        if paths & own_code:
            self._upgrade.code_changed(sorted(paths & own_code)[0])
        config_files = self._own_files() - own_code
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

    # ----- hitless self-restart (see taskforce.runtime.upgrade) -------------------------

    def _handed_over(self) -> dict[str, object]:
        """What the legion hands over to the next image, beside the supervisor's state."""
        return {"reloads": self.reloads}

    def upgrade(self) -> bool:
        """Re-execute taskforce in place, keeping every task running; whether the upgrade
        was set in motion (the new code is checked first)."""
        return self._upgrade.start()

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


__all__ = ["ConfigError", "Legion", "Loaded", "Mark", "Outcome", "Policy", "Problem"]
