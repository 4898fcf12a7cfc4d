"""The library entry point: supervise the tasks of a configuration file.

The specification calls this class `legion`. A program creates one with a configuration
file and (optionally) a roles file, then calls :meth:`Legion.manage`, which runs until
the legion is stopped (SIGTERM, SIGINT or :meth:`Legion.stop`) or reset (SIGHUP or
:meth:`Legion.reset`), stopping every task on the way out.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from taskforce.config.errors import ConfigError, Mark, Problem
from taskforce.config.load import load_config
from taskforce.config.model import Config
from taskforce.config.host import HostFacts
from taskforce.config.resolve import resolve
from taskforce.config.roles import Roles, parse_roles
from taskforce.core.spec import DesiredState, Policy
from taskforce.runtime.supervisor import Outcome, Supervisor

log = logging.getLogger("taskforce")


@dataclass(frozen=True, slots=True)
class Loaded:
    config: Config
    roles: Roles | None
    desired: DesiredState
    problems: tuple[Problem, ...]  # tasks left out because they could not be resolved


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
    ) -> None:
        self.config_file = config_file
        self.roles_file = roles_file
        self.environ = dict(os.environ if environ is None else environ)
        self.host = host or HostFacts.from_system()
        self.loaded: Loaded | None = None
        self._supervisor: Supervisor | None = None
        self._pending: Outcome | None = None

    # ----- loading --------------------------------------------------------------------

    def read_roles(self) -> Roles | None:
        if self.roles_file is None:
            return None
        try:
            with open(self.roles_file, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            log.warning("roles file %s does not exist: no role is active", self.roles_file)
            return Roles(())
        except OSError as exc:
            raise ConfigError(
                [Problem(self.roles_file, None, "", f"cannot read roles file: {exc.strerror}")]
            ) from None
        return parse_roles(data.decode("utf-8", "surrogateescape"), self.roles_file)

    def load(self) -> Loaded:
        """Read and resolve the configuration and roles; ConfigError if unusable."""
        config = load_config(self.config_file)
        roles = self.read_roles()
        desired, problems = resolve(config, roles, self.environ, self.host)
        return Loaded(config, roles, desired, tuple(problems))

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

    async def serve(self, on_ready: Callable[[], None] | None = None) -> Outcome:
        loaded = self.load()
        self._report(loaded)
        self.loaded = loaded
        supervisor = Supervisor(loaded.desired)
        self._supervisor = supervisor
        if self._pending is not None:
            supervisor.stop(self._pending)
        if on_ready is not None:
            asyncio.get_running_loop().call_soon(on_ready)
        try:
            return await supervisor.run()
        finally:
            self._supervisor = None

    def stop(self) -> None:
        """Stop all tasks and make manage() return Outcome.STOPPED (call from the loop)."""
        self._request(Outcome.STOPPED)

    def reset(self) -> None:
        """Stop all tasks and make manage() return Outcome.RESET."""
        self._request(Outcome.RESET)

    def _request(self, outcome: Outcome) -> None:
        if self._supervisor is None:
            self._pending = outcome
        else:
            self._supervisor.stop(outcome)

    @property
    def supervisor(self) -> Supervisor | None:
        return self._supervisor

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


__all__ = ["ConfigError", "Legion", "Loaded", "Mark", "Outcome", "Policy", "Problem"]
