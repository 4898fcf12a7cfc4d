# Over 450 lines: one job, composing a configuration's files; its cache and each run share parts.
"""Compose the configuration: the main file, the files it includes, their environment files.

The main file's `include` lists paths and glob patterns, relative to the file naming them;
each pattern's matches are taken in sorted order, a pattern matching nothing is fine and a
named file that is missing is an error. An included file holds `tasks`, and `defines`,
`defaults` and `env_file` that apply to its own tasks only (see
:mod:`taskforce.config.context` for where they stand); it may include others. A file
reached twice is read once, where it is first reached; a file including itself, directly
or not, is an error naming the chain. A task defined in two files is an error naming both
places.

:class:`Composer` keeps every file it read with what it made of it, so that a reload reads
and validates again only the files that changed: those the watcher named (see
:meth:`Composer.changed`) or whose status (inode, size, times) changed. The main file is
read every time, as it always was; its tasks are validated through the usual memo. A task
whose entry, file scope and environment files did not change keeps its very
:class:`TaskConfig` object, so resolving reuses its spec.
"""

from __future__ import annotations

import marshal
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, cast

from taskforce.config.description import CONFIG, FRAGMENT
from taskforce.config.errors import ConfigError, Mark, Problem, format_path
from taskforce.config.json_fast import Known
from taskforce.config.load import read_text
from taskforce.config.model import (
    MARSHAL_VERSION,
    Config,
    EnvFile,
    FileScope,
    Fragment,
    TaskConfig,
    Value,
)
from taskforce.config.reuse import TaskChanges
from taskforce.config.shapes import Invalid, Memo, Reporter
from taskforce.config.validate import (
    RawTask,
    check_between,
    check_entries,
    defined_names,
    raw_tasks,
)
from taskforce.config.yaml_source import Document, Packed, Path, load_document, pack

# dev, inode, size, modification and change times: a file whose status is the same and
# that the watcher did not name is not read again.
Signature = tuple[int, int, int, int, int]
_MAGIC = frozenset("*?[")


def _signature(path: str) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def has_magic(pattern: str) -> bool:
    return not _MAGIC.isdisjoint(pattern)


@dataclass(eq=False)
class _Part:
    """One file of the composition as last read: its document and what validating it
    alone gave (the main file: a Config; an included one: a Fragment)."""

    path: str
    signature: Signature | None
    text: Packed  # see yaml_source.pack: a large text is kept compressed
    document: Document | None = None
    value: Config | Fragment | None = None
    problems: tuple[Problem, ...] = ()
    memo: Memo = field(default_factory=Memo)
    # The task entries as written (once the file checks out, kept only as bytes: see
    # _Written), and the names of those linking to other tasks.
    raw: Mapping[str, RawTask] = field(default_factory=dict)
    linked: frozenset[str] = frozenset()
    # Composed objects kept from one load to the next (see _Run._composed).
    scope: FileScope | None = None
    tasks: dict[str, tuple[TaskConfig, TaskConfig]] = field(default_factory=dict)
    composed: tuple[object, object, object, Mapping[str, TaskConfig]] | None = None
    # The latest version of the file that checked out (its entries are not checked again).
    valid: _Valid | None = None
    # What loading its previous text found (the plain JSON fast path's counts).
    known: Known = field(default_factory=Known)


@dataclass(eq=False)
class _Env:
    signature: Signature | None
    values: dict[str, str] | None  # None: missing
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Composition:
    """The configuration composed from every file, and where each part came from."""

    config: Config
    document: ComposedDocument
    files: tuple[str, ...]  # the main file, then each included file in order
    # Names the environment files and the included files' defines and defaults give
    # (for the warnings of `-C` about names nothing defines).
    names: frozenset[str] = frozenset()
    # The tasks that changed since the previous composition, when known.
    changes: TaskChanges | None = None

    def status(self) -> dict[str, Any]:
        """The composed document as status shows it: when files are included, with the
        files read and where each task is defined (file:line:col). A configuration of one
        file is shown as it is, as the original shows it."""
        data: dict[str, Any] = dict(self.document.data)
        if len(self.files) == 1:
            return data
        data["sources"] = {
            "files": list(self.files),
            "tasks": {
                name: _where(
                    self.document.source_at(("tasks", name)),
                    self.document.key_mark_of(("tasks", name)),
                )
                for name in self.config.tasks
            },
        }
        return data


def _where(source: str, mark: Mark | None) -> str:
    return source if mark is None else f"{source}:{mark.line}:{mark.column}"


class ComposedDocument(Document):
    """The main file's document with every task entry of the composition: positions
    and sources of a task's values are those of the file defining it."""

    __slots__ = ("_main", "_origins")

    def __init__(self, main: Document, origins: Mapping[str, _Part]) -> None:
        self._main = main
        self._origins = origins  # task name -> the file defining it
        super().__init__(main.data, main.source)

    @property
    def data(self) -> dict[str, Value]:
        """The main file's data with every task entry of the composition, decoded now:
        the files keep them as bytes (this is read for status and warnings only)."""
        tasks = {name: cast(Value, part.raw[name]) for name, part in self._origins.items()}
        return {**self._data, "tasks": tasks}

    @data.setter
    def data(self, data: dict[str, Value]) -> None:
        self._data = data  # the main file's: its tasks are replaced by the composition's

    def task_source(self, name: str) -> str:
        """The file defining the task `name`."""
        return self._of(("tasks", name)).source

    def _of(self, path: Sequence[str | int]) -> Document:
        if len(path) >= 2 and path[0] == "tasks":
            found = self._origins.get(str(path[1]))
            if found is not None and found.document is not None:
                return found.document
        return self._main

    def source_at(self, path: Sequence[str | int]) -> str:
        return self._of(path).source

    def mark_of(self, path: Sequence[str | int]) -> Mark | None:
        return self._of(path).mark_of(path)

    def key_mark_of(self, path: Sequence[str | int]) -> Mark | None:
        return self._of(path).key_mark_of(path)


class _Named(Mapping[str, RawTask]):
    """Task entries read when asked, named as the keys of `_names`."""

    __slots__ = ("_names",)

    def __init__(self, names: Mapping[str, object]) -> None:
        self._names = names

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class _Written(_Named):
    """The task entries of a file that checked out, kept only as the bytes marshal wrote
    for them (those of _Valid.entries), each decoded when read: the checks between tasks
    read the few that link to others; status and warnings read them all, rarely. Parsed,
    an entry costs some 600 bytes more than its bytes (measured at 10,000 tasks)."""

    __slots__ = ("_bytes",)

    def __init__(self, written: dict[str, bytes]) -> None:
        super().__init__(written)
        self._bytes = written

    def __getitem__(self, name: str) -> RawTask:
        return cast(RawTask, marshal.loads(self._bytes[name]))


class _Entries(_Named):
    """Every task entry of a composition, read from the file defining it (each decoded
    once: the checks between tasks read a linked one several times)."""

    __slots__ = ("_origins", "_read")

    def __init__(self, origins: Mapping[str, _Part]) -> None:
        super().__init__(origins)
        self._origins = origins
        self._read: dict[str, RawTask] = {}

    def __getitem__(self, name: str) -> RawTask:
        entry = self._read.get(name)
        if entry is None:
            entry = self._read[name] = self._origins[name].raw[name]
        return entry


class Composer:
    """Composes the configuration of `main`, again and again, redoing only what changed."""

    def __init__(self, main: str, memo: Memo | None = None) -> None:
        self.main = os.path.abspath(main)
        self._memo = memo if memo is not None else Memo()
        self._parts: dict[str, _Part] = {}
        self._envs: dict[str, _Env] = {}
        self._dirty: set[str] = set()
        # What the latest composition read, and the latest one that worked: both watched.
        self._files: frozenset[str] = frozenset()
        self._dirs: frozenset[str] = frozenset()
        self._good: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        # The latest composition's tasks, and those each file gave (see _changes).
        self._last: tuple[Mapping[str, TaskConfig], dict[str, Mapping[str, TaskConfig]]] | None
        self._last = None
        # How many compositions were made (what watched_files() and watched_dirs() give
        # changes only with a new one).
        self.runs = 0

    def changed(self, paths: Iterable[str]) -> None:
        """The watcher saw these paths change: read them again next time."""
        self._dirty.update(paths)

    def watched_files(self) -> frozenset[str]:
        """Every included and environment file read (or looked for), the main file aside."""
        return (self._files | self._good[0]) - {self.main}

    def watched_dirs(self) -> frozenset[str]:
        """The directories whose entries a pattern reads: a new file there may match."""
        return self._dirs | self._good[1]

    def compose(self, text: str | None = None, source: str | None = None) -> Composition:
        """The composed configuration; ConfigError listing every problem of every file.

        `text` is the main file's content when given (read from disk otherwise), and
        `source` its name in problems.
        """
        run = _Run(self)
        self.runs += 1
        try:
            composition = run.compose(text, source or self.main)
        finally:
            self._dirty.clear()
            self._files = frozenset(run.files)
            self._dirs = frozenset(run.dirs)
            # Files no longer part of the composition are forgotten.
            self._parts = {p: part for p, part in self._parts.items() if p in run.files}
            self._envs = {p: env for p, env in self._envs.items() if p in run.files}
        self._good = (self._files, self._dirs)
        tasks = composition.config.tasks
        changes = _changes(self._last, tasks, run.given)
        self._last = (tasks, run.given)
        return replace(composition, changes=changes)

    # ----- reading, each file at most once per change ---------------------------------

    def part(self, path: str, text: str | None, source: str) -> _Part:
        """The file at `path`, read and validated again only if it changed."""
        cached = self._parts.get(path)
        signature = _signature(path) if text is None else None
        if (
            cached is not None
            and text is None
            and path not in self._dirty
            and path != self.main
            and signature is not None
            and cached.signature == signature
        ):
            return cached
        if text is None:
            text = read_text(path)  # ConfigError naming the file
        packed = pack(text)
        if cached is not None and cached.text == packed and cached.document is not None:
            cached.signature = signature
            return cached
        part = _Part(path, signature, packed, memo=cached.memo if cached is not None else Memo())
        if path == self.main:
            part.memo = self._memo
        if cached is not None:
            part.valid = cached.valid  # until this version checks out
            part.known = cached.known
        try:
            part.document = load_document(text, source, known=part.known, packed=packed)
        except ConfigError as exc:
            part.problems = exc.problems
        else:
            part.raw = raw_tasks(part.document.data)
            part.linked = frozenset(
                name for name, entry in part.raw.items() if "requires" in entry or "onexit" in entry
            )
            part.value, part.problems = _validate(part, path == self.main, part.valid)
        self._parts[path] = part
        return part

    def env(self, path: str) -> _Env:
        cached = self._envs.get(path)
        signature = _signature(path)
        if cached is not None and path not in self._dirty and cached.signature == signature:
            return cached
        if signature is None:
            found = _Env(None, None)
        else:
            # Imported when a configuration has environment files: most have none.
            from taskforce.config.envfile import parse_env

            try:
                found = _Env(signature, parse_env(read_text(path), path))
            except ConfigError as exc:
                found = _Env(signature, {}, exc.problems)
        self._envs[path] = found
        return found


class _Valid(NamedTuple):
    """What the latest version of a file that checked out gave: each task entry as bytes
    (see :func:`_entry_bytes`), the tasks, and the names its `defines` certainly give."""

    entries: dict[str, bytes]
    tasks: Mapping[str, TaskConfig]
    defined: frozenset[str]


def _validate(
    part: _Part, main: bool, valid: _Valid | None
) -> tuple[Config | Fragment | None, tuple[Problem, ...]]:
    """A file checked alone: its shape, and the checks that read one task entry.

    A task entry written exactly as in the latest version that checked out (`valid`)
    keeps what it gave then without being checked again: checking an entry reads
    nothing else but the names the file defines. A reload of a file of thousands of
    tasks checks the one that changed.
    """
    document = part.document
    assert document is not None
    data = document.data
    defined = defined_names(data)
    entries = part.known.written(data.get("tasks"))
    if entries is None:
        entries = _entry_bytes(data.get("tasks"))
    kept: dict[str, TaskConfig] = {}
    if valid is not None and entries:
        before = valid.entries
        kept = {n: valid.tasks[n] for n, written in entries.items() if before.get(n) == written}
    if kept:
        tasks = data["tasks"]
        assert isinstance(tasks, dict)
        data = {**data, "tasks": {n: entry for n, entry in tasks.items() if n not in kept}}
    report = Reporter(document, memo=part.memo)
    if entries:  # the memo's keys share these bytes (kept in part.valid)
        tasks = data["tasks"]
        assert isinstance(tasks, dict)
        part.memo.serialized = {id(entry): entries[name] for name, entry in tasks.items()}
    try:
        value = (CONFIG if main else FRAGMENT).check(data, (), report)
    finally:
        part.memo.serialized = {}
    part.memo.finish()
    raw = part.raw
    if kept and valid is not None and defined == valid.defined:
        raw = {name: entry for name, entry in raw.items() if name not in kept}
    check_entries(data if main else {}, report, raw, defined)
    if isinstance(value, Invalid) or report.problems:
        return None, tuple(report.problems)
    if kept:
        checked = value.tasks
        merged = {n: kept[n] if n in kept else checked[n] for n in part.raw}
        value = replace(value, tasks=merged)
    if entries is not None:
        part.valid = _Valid(entries, value.tasks, defined)
        # The memo now holds nothing but the entries of part.valid, which the next
        # validation keeps without asking it (a changed entry's bytes differ): it only
        # ever serves across a validation that found problems. 180 bytes a task.
        part.memo.forget()
        # From now on the entries are read from their bytes (see _Written), and the
        # document keeps the rest: what the file says aside from its tasks.
        part.raw = _Written(entries)
        document.data = {**document.data, "tasks": {}}
    return value, ()


def _entry_bytes(tasks: object) -> dict[str, bytes] | None:
    """Each task entry of a `tasks` map as marshal writes it: equal bytes, equal entries
    (1, 1.0 and true told apart, keys in the same order). None if not a map of plain
    data."""
    if not isinstance(tasks, dict):
        return None
    try:
        return {name: marshal.dumps(entry, MARSHAL_VERSION) for name, entry in tasks.items()}
    except ValueError:
        return None


class _Run:
    """One composition: walks the includes depth first, gathering tasks and problems."""

    def __init__(self, composer: Composer) -> None:
        self.composer = composer
        self.problems: list[Problem] = []
        self.files: dict[str, None] = {}  # every file read or looked for, in order
        self.dirs: set[str] = set()
        self.parts: list[_Part] = []  # the configuration files, in order
        self.seen: set[str] = set()  # their real paths
        self.tasks: dict[str, TaskConfig] = {}
        self.origins: dict[str, _Part] = {}  # each task's file
        self.linked: set[str] = set()
        self.names: set[str] = set()
        self.given: dict[str, Mapping[str, TaskConfig]] = {}  # each file's tasks

    def compose(self, text: str | None, source: str) -> Composition:
        composer = self.composer
        main = composer.main
        self.files[main] = None
        part = composer.part(main, text, source)
        self.problems.extend(part.problems)
        config = part.value if isinstance(part.value, Config) else None
        self.parts.append(part)
        self.seen.add(os.path.realpath(main))
        if part.document is not None:
            self._tasks(part, config.tasks if config is not None else None, None)
            self._includes(part, [os.path.realpath(main)])
        top_env: dict[str, str] = {}
        if config is not None:
            top_env = self._env_files(part, config.env_file, ("env_file",))
            self.names.update(top_env)
        main_document = part.document
        if main_document is None:
            raise ConfigError(_ordered(self.problems))
        document = ComposedDocument(main_document, self.origins)
        # The links between tasks, reported with the other problems of every file.
        report = Reporter(document, self.problems)
        check_between(report, _Entries(self.origins), self.linked)
        if self.problems or config is None:
            raise ConfigError(_ordered(self.problems))
        config = replace(config, tasks=self.tasks, env=top_env, source=main_document.source)
        files = tuple(p.path for p in self.parts)
        return Composition(config, document, files, frozenset(self.names))

    def _includes(self, part: _Part, chain: list[str]) -> None:
        document = part.document
        if document is None:
            return
        # As written even when the file has problems: those of the files it includes are
        # reported together with its own.
        written = document.data.get("include")
        patterns = [written] if isinstance(written, str) else written
        if not isinstance(patterns, list):
            return
        base = os.path.dirname(part.path)
        for index, pattern in enumerate(patterns):
            if not isinstance(pattern, str) or not pattern:
                continue  # the shape check reports it
            listed = isinstance(document.get(("include",)), list)
            at: Path = ("include", index) if listed else ("include",)
            for path in self._expand(os.path.normpath(os.path.join(base, pattern)), document, at):
                real = os.path.realpath(path)
                if real in chain:
                    loop = [*chain[chain.index(real) :], real]
                    shown = " -> ".join(_short(p, base) for p in loop)
                    self._problem(document, at, f"include cycle: {shown}")
                    continue
                if real in self.seen:
                    continue  # read where first reached
                self.seen.add(real)
                self._include(path, real, chain)

    def _include(self, path: str, real: str, chain: list[str]) -> None:
        composer = self.composer
        self.files[path] = None
        try:
            part = composer.part(path, None, path)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return
        self.parts.append(part)
        self.problems.extend(part.problems)
        fragment = part.value if isinstance(part.value, Fragment) else None
        if part.document is None:
            return
        scope = None
        if fragment is not None:
            scope = self._scope(part, fragment)
        self._tasks(part, fragment.tasks if fragment is not None else None, scope)
        self._includes(part, [*chain, real])

    def _expand(self, pattern: str, document: Document, at: Path) -> list[str]:
        """The files an include entry names: a glob's matches (regular files, sorted), or
        the file itself, which must exist."""
        if not has_magic(pattern):
            if not os.path.exists(pattern):
                self.files[pattern] = None  # watched: creating it is a change
                self._problem(document, at, f"there is no file {pattern}")
                return []
            return [pattern]
        import glob  # with fnmatch: only for a configuration that has patterns

        self.dirs.update(_pattern_dirs(pattern))
        return sorted(p for p in glob.glob(pattern) if os.path.isfile(p))

    def _scope(self, part: _Part, fragment: Fragment) -> FileScope | None:
        env = self._env_files(part, fragment.env_file, ("env_file",))
        self.names.update(fragment.defines, fragment.defaults, env)
        if not (fragment.defines or fragment.defaults or env):
            scope = None
        else:
            scope = FileScope(part.path, fragment.defines, fragment.defaults, env)
        kept = part.scope
        if kept is not None and scope is not None and _same_scope(kept, scope):
            return kept
        part.scope = scope
        return scope

    def _tasks(
        self, part: _Part, tasks: Mapping[str, TaskConfig] | None, scope: FileScope | None
    ) -> None:
        """Add the tasks of one file, each at most once in the whole composition.

        Whole maps are merged at once, not task by task: with thousands of tasks in files
        that did not change, a reload costs what the changed files hold.
        """
        document = part.document
        assert document is not None
        raw = part.raw
        twice = self.origins.keys() & raw.keys()
        if twice:
            for name in sorted(twice):
                first = self.origins[name].document
                assert first is not None
                there = _where(first.source, first.key_mark_of(("tasks", name)))
                self.problems.append(
                    Problem(
                        document.source,
                        document.key_mark_of(("tasks", name)),
                        f"tasks.{name}",
                        f"the task {name!r} is defined twice: here and at {there}",
                    )
                )
        names = raw if not twice else [name for name in raw if name not in twice]
        self.origins.update(dict.fromkeys(names, part))
        self.linked.update(part.linked)
        if tasks is not None:
            composed = self._composed(part, tasks, scope)
            self.given[part.path] = composed
            self.tasks.update(
                composed if not twice else {n: t for n, t in composed.items() if n not in twice}
            )

    def _composed(
        self, part: _Part, tasks: Mapping[str, TaskConfig], scope: FileScope | None
    ) -> Mapping[str, TaskConfig]:
        """The tasks of a file with its scope and their environment files."""
        with_env = [task for task in tasks.values() if task.env_file]
        if scope is None and not with_env:
            return tasks
        envs = {
            task.name: self._env_files(part, task.env_file, ("tasks", task.name, "env_file"))
            for task in with_env
        }
        for env in envs.values():
            self.names.update(env)
        kept = part.composed
        if kept is not None and kept[0] is tasks and kept[1] is scope and kept[2] == envs:
            return kept[3]
        composed = {
            name: self._task(part, task, scope, envs.get(name, {})) for name, task in tasks.items()
        }
        part.composed = (tasks, scope, envs, composed)
        return composed

    @staticmethod
    def _task(
        part: _Part, task: TaskConfig, scope: FileScope | None, env: dict[str, str]
    ) -> TaskConfig:
        """`task` with its file scope and environment files; the object composed last time
        when nothing of that changed (resolving then reuses its spec)."""
        if scope is None and not task.env_file:
            return task
        kept = part.tasks.get(task.name)
        if kept is not None and kept[0] is task and kept[1].scope is scope and kept[1].env == env:
            return kept[1]
        composed = replace(task, env=env, scope=scope)
        part.tasks[task.name] = (task, composed)
        return composed

    def _env_files(self, part: _Part, files: Sequence[EnvFile], at: Path) -> dict[str, str]:
        """The variables of some env_file entries, later files winning."""
        document = part.document
        assert document is not None
        written = _written(part, at)
        values: dict[str, str] = {}
        for index, entry in enumerate(files):
            path = os.path.normpath(os.path.join(os.path.dirname(part.path), entry.path))
            self.files[path] = None
            env = self.composer.env(path)
            entry_at: Path = (*at, index) if isinstance(written, list) else at
            if env.values is None:
                if not entry.optional:
                    self._problem(
                        document,
                        entry_at,
                        f"there is no environment file {path} (write '-{entry.path}' or "
                        "optional: true if it may be missing)",
                    )
                continue
            self.problems.extend(env.problems)
            values.update(env.values)
        return values

    def _problem(self, document: Document, at: Path, message: str) -> None:
        self.problems.append(
            Problem(document.source_at(at), document.mark_of(at), format_path(at), message)
        )


def _written(part: _Part, at: Path) -> object:
    """The value at `at` in a file: ("env_file",), or ("tasks", name, key) read from the
    task's entry (the document keeps no task entries once the file checks out)."""
    if len(at) == 3 and at[0] == "tasks":
        entry = part.raw.get(str(at[1]))
        return None if entry is None else entry.get(str(at[2]))
    assert part.document is not None
    return part.document.get(at)


def _changes(
    last: tuple[Mapping[str, TaskConfig], dict[str, Mapping[str, TaskConfig]]] | None,
    tasks: Mapping[str, TaskConfig],
    given: dict[str, Mapping[str, TaskConfig]],
) -> TaskChanges | None:
    """The tasks whose object is not the latest composition's, from what each file gave:
    the files that gave the very same map as then are passed over. None when the tasks
    kept are not all in the same order (files or tasks reordered, a task moved to another
    file): then every task is looked at."""
    if last is None:
        return None
    base, before = last
    if [p for p in given if p in before] != [p for p in before if p in given]:
        return None
    added: set[str] = set()
    removed: set[str] = set()
    names: set[str] = set()
    for path, now in given.items():
        then = before.get(path)
        if then is now:
            continue
        if then is None:
            added.update(now)
            continue
        if list(now) != list(then):
            if [n for n in now if n in then] != [n for n in then if n in now]:
                return None
            added.update(n for n in now if n not in then)
            removed.update(n for n in then if n not in now)
        names.update(n for n, task in now.items() if then.get(n) is not task)
    for path, then in before.items():
        if path not in given:
            removed.update(then)
    if added & removed:
        return None  # moved from one file to another
    return TaskChanges(base, frozenset(names | added | removed))


def _same_scope(a: FileScope, b: FileScope) -> bool:
    # repr tells 1, 1.0 and True apart, as substitution does.
    return (
        a.source == b.source
        and repr(a.defines) == repr(b.defines)
        and repr(a.defaults) == repr(b.defaults)
        and a.env == b.env
    )


def _short(path: str, base: str) -> str:
    return os.path.relpath(path, base) if path.startswith(base + os.sep) else path


def _pattern_dirs(pattern: str) -> Iterator[str]:
    """The directories whose entries matching `pattern` reads: where the first component
    with a wildcard is looked for, and every directory matched on the way down."""
    head = os.path.dirname(pattern)
    if not has_magic(head):
        yield head
        return
    import glob

    yield from _pattern_dirs(head)
    for directory in glob.glob(head):
        if os.path.isdir(directory):
            yield directory


def _ordered(problems: Iterable[Problem]) -> list[Problem]:
    """File by file in the order read, each file's problems by position."""
    order: dict[str, int] = {}
    listed = list(problems)
    for problem in listed:
        order.setdefault(problem.source, len(order))

    def key(problem: Problem) -> tuple[int, int, int]:
        mark = problem.mark or Mark(0, 0)
        return (order[problem.source], mark.line, mark.column)

    return sorted(dict.fromkeys(listed), key=key)
