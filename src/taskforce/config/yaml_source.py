# Over 450 lines: one job, YAML to data with positions; its parts share PyYAML's internals.
"""Load configuration text into plain Python data, remembering where every value was written.

The configuration is YAML (flow style, block style, or plain JSON). Three choices here differ
from ``yaml.safe_load``:

* Scalars follow the YAML 1.2 core schema. Under YAML 1.1 an unquoted ``off`` or ``yes``
  silently becomes a boolean and ``1:30`` a sexagesimal integer; in a supervisor's
  configuration (``control: off``) that would be a trap.
* Every key and value keeps its line and column, so that validation can point at the
  exact place of a problem.
* Duplicate keys are errors rather than "last one wins".

Positions are only needed to report problems, so they are not recorded while loading
but found again, with the YAML loader, when a problem asks for one. Plain JSON, the
usual form of a generated configuration, takes a fast path
(:mod:`taskforce.config.json_fast`) that gives the same data.

The specification also writes ``["-l": "{LOGFILE}"]`` and expects the two words ``-l`` and
the file name. YAML reads a ``key: value`` pair inside a flow sequence as a one-pair mapping
written without braces; such compact pairs are loaded as two list items so that the
specification's example works as written. A pair written with braces stays a mapping (a
conditional).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from taskforce.config.errors import ConfigError, Mark, Problem, format_path
from taskforce.config.json_fast import Known, load_json
from taskforce.config.model import Value

# A key path into the document: map keys are strings, list positions are integers.
Path = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
NULL_TAG = _TAG + "null"
BOOL_TAG = _TAG + "bool"
INT_TAG = _TAG + "int"
FLOAT_TAG = _TAG + "float"
STR_TAG = _TAG + "str"
MAP_TAG = _TAG + "map"
SEQ_TAG = _TAG + "seq"


class CoreSchemaResolver(BaseResolver):
    """Tags plain scalars by the YAML 1.2 core schema (yes, no, on and off stay strings)."""

    # A fresh table: BaseResolver's subclasses in PyYAML carry the YAML 1.1 rules.
    yaml_implicit_resolvers: dict[Any, Any] = {}


# Deeper nesting than this is refused: no configuration needs it, and building (then
# validating) the value would otherwise recurse until the interpreter gives up.
MAX_DEPTH = 100
# Values an alias may copy in all: `&a [x, x]`, `&b [*a, *a]`... doubles with each line,
# and a few dozen lines would take all the memory there is ("billion laughs").
MAX_ALIAS_COPIES = 100_000
# Longest number accepted: Python refuses to convert integers of over 4300 digits.
_MAX_NUMBER = 1000

_DIGITS = "0123456789"
_CORE_SCHEMA_RULES: tuple[tuple[str, str, str], ...] = (
    # (tag, pattern, the characters a matching scalar can start with)
    (NULL_TAG, r"^(?:~|null|Null|NULL|)$", "~nN"),
    (BOOL_TAG, r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (INT_TAG, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+" + _DIGITS),
    (
        FLOAT_TAG,
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+." + _DIGITS,
    ),
)
_CORE_PATTERNS = {tag: re.compile(pattern) for tag, pattern, _ in _CORE_SCHEMA_RULES}
for _tag, _, _first in _CORE_SCHEMA_RULES:
    CoreSchemaResolver.add_implicit_resolver(_tag, _CORE_PATTERNS[_tag], list(_first))
# The empty plain scalar (`key:` with nothing after it) is null too.
CoreSchemaResolver.add_implicit_resolver(NULL_TAG, re.compile(r"^$"), [""])


class _PurePythonComposer(Reader, Scanner, Parser, Composer, CoreSchemaResolver):
    """Text to node graph, without libyaml."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        CoreSchemaResolver.__init__(self)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        # PyYAML composes recursively: refuse deep nesting before Python's stack runs out
        # (libyaml stops at 1000 levels by itself, and the builder at MAX_DEPTH).
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, _too_deep(), event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


try:
    from yaml._yaml import CParser

    class _LibyamlComposer(CParser, CoreSchemaResolver):
        """Text to node graph with libyaml, which is faster and accepts tabs in flow style."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            CoreSchemaResolver.__init__(self)

    HAVE_LIBYAML = True
except ImportError:  # PyYAML built without libyaml
    HAVE_LIBYAML = False


class Document:
    """A loaded configuration: its data and where each key and value was written.

    Positions are only needed to report problems: a document loaded without them finds
    them in its text, with the YAML loader, when first asked.
    """

    __slots__ = ("_key_marks", "_text", "_use_libyaml", "_value_marks", "data", "source")

    def __init__(
        self,
        data: dict[str, Value],
        source: str,
        value_marks: Mapping[Path, Mark] | None = None,
        key_marks: Mapping[Path, Mark] | None = None,
        *,
        text: str | None = None,
        use_libyaml: bool = HAVE_LIBYAML,
    ) -> None:
        self.data = data
        self.source = source
        self._text = text  # with a text, the marks are read from it when first needed
        self._use_libyaml = use_libyaml
        self._value_marks: Mapping[Path, Mark] | None = None
        self._key_marks: Mapping[Path, Mark] | None = None
        if text is None:
            self._value_marks = {} if value_marks is None else value_marks
            self._key_marks = {} if key_marks is None else key_marks

    @property
    def value_marks(self) -> Mapping[Path, Mark]:
        """Where each value starts; the root mapping is at ()."""
        if self._value_marks is None:
            self._read_marks()
        assert self._value_marks is not None
        return self._value_marks

    @property
    def key_marks(self) -> Mapping[Path, Mark]:
        """Where each map key is written, by the path of the value it introduces."""
        if self._key_marks is None:
            self._read_marks()
        assert self._key_marks is not None
        return self._key_marks

    def _read_marks(self) -> None:
        assert self._text is not None
        try:
            full = _load_with_positions(self._text, self.source, self._use_libyaml)
        except ConfigError:  # cannot happen: only a text YAML accepts loads without them
            self._value_marks, self._key_marks = {}, {}
        else:
            self._value_marks, self._key_marks = full.value_marks, full.key_marks
        self._text = None

    def source_at(self, path: Sequence[str | int]) -> str:
        """The file the value at `path` is written in (a composed document has several)."""
        return self.source

    def mark_of(self, path: Sequence[str | int]) -> Mark | None:
        """The position of the value at `path`, or of its nearest ancestor that has one."""
        for prefix in _prefixes(tuple(path)):
            mark = self.value_marks.get(prefix)
            if mark is not None:
                return mark
        return None

    def key_mark_of(self, path: Sequence[str | int]) -> Mark | None:
        """Where the key introducing `path` is written; the value's position if not a key."""
        mark = self.key_marks.get(tuple(path))
        return mark if mark is not None else self.mark_of(path)

    def get(self, path: Sequence[str | int]) -> object:
        """The raw value at `path`, or None when the path does not exist."""
        node: object = self.data
        for part in path:
            if isinstance(part, str) and isinstance(node, dict):
                node = node.get(part)
            elif isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
                node = node[part]
            else:
                return None
        return node


def _prefixes(path: Path) -> Iterator[Path]:
    for end in range(len(path), -1, -1):
        yield path[:end]


def load_document(
    text: str,
    source: str,
    *,
    use_libyaml: bool = HAVE_LIBYAML,
    fast: bool = True,
    known: Known | None = None,
) -> Document:
    """Parse `text` (named `source` in problems) into a Document; raise ConfigError.

    With `fast`, plain JSON takes the fast path, and positions are found only when first
    asked for; without, every position is recorded while loading. `known`: what the
    fast path learnt from the previous text of the same file (see
    :class:`~taskforce.config.json_fast.Known`).
    """
    # libyaml does not count a byte order mark as a column and the Python parser does;
    # without it, columns mean the same to both and to the compact pair check.
    text = text.removeprefix("\ufeff")
    if not fast:
        return _load_with_positions(text, source, use_libyaml)
    if use_libyaml:  # the fast path gives what libyaml would
        data = load_json(text, MAX_DEPTH, known)
        if data is not None:
            return Document(data, source, text=text, use_libyaml=use_libyaml)
    root = _compose_document(text, source, use_libyaml)
    try:
        # Without positions, which take a third of the time: read again if one is needed.
        built = _Builder(text, source, positions=False).build(root, ())
        if isinstance(built, dict):
            return Document(built, source, text=text, use_libyaml=use_libyaml)
    except _NeedPositions:
        pass
    return _build_with_positions(root, text, source)


def _load_with_positions(text: str, source: str, use_libyaml: bool) -> Document:
    return _build_with_positions(_compose_document(text, source, use_libyaml), text, source)


def _compose_document(text: str, source: str, use_libyaml: bool) -> Node:
    root = _compose(text, source, use_libyaml)
    if root is None:
        raise ConfigError([Problem(source, Mark(1, 1), "", "the configuration is empty")])
    return root


def _build_with_positions(root: Node, text: str, source: str) -> Document:
    builder = _Builder(text, source)
    data = builder.build(root, ())
    if not isinstance(data, dict):
        builder.problem(
            root,
            "the configuration must be a map with keys such as 'tasks', "
            f"not {'a list' if isinstance(data, list) else 'a single value'}",
        )
    if builder.problems:
        raise ConfigError(builder.problems)
    assert isinstance(data, dict)
    return Document(data, source, builder.value_marks, builder.key_marks)


def _compose(text: str, source: str, use_libyaml: bool) -> Node | None:
    try:
        # The pure Python reader already checks the characters while being set up.
        composer = _LibyamlComposer(text) if use_libyaml else _PurePythonComposer(text)
        try:
            node: Node | None = composer.get_single_node()
            return node
        finally:
            composer.dispose()
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_marked_error_problem(exc, source)]) from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError([_reader_error_problem(exc, text, source, use_libyaml)]) from None
    except UnicodeEncodeError as exc:
        # A str holding a lone surrogate (only from a caller, never from a file read as
        # UTF-8): libyaml cannot even be given it.
        lines_before = _LINE_BREAK.split(text[: exc.start])
        mark = Mark(len(lines_before), len(lines_before[-1]) + 1)
        character = text[exc.start]
        message = f"the character {character!r} is not allowed in YAML"
        raise ConfigError([Problem(source, mark, "", message)]) from None


def _too_deep() -> str:
    return f"lists and maps are nested more than {MAX_DEPTH} levels deep"


def _marked_error_problem(exc: yaml.MarkedYAMLError, source: str) -> Problem:
    mark = _mark(exc.problem_mark or exc.context_mark)
    if exc.context == "expected a single document in the stream":
        message = "the file holds more than one YAML document; expected a single one"
    else:
        message = exc.problem or exc.context or "malformed YAML"
        context_mark = _mark(exc.context_mark)
        if exc.problem and exc.context and context_mark is not None and context_mark != mark:
            message += f" ({exc.context} at line {context_mark.line}, column {context_mark.column})"
    return Problem(source, mark, "", message)


def _reader_error_problem(
    exc: yaml.reader.ReaderError, text: str, source: str, from_libyaml: bool
) -> Problem:
    offset = exc.position
    if from_libyaml:  # libyaml counts bytes of UTF-8, we need characters
        offset = len(text.encode("utf-8")[:offset].decode("utf-8", "ignore"))
    lines_before = _LINE_BREAK.split(text[:offset])
    line, column = len(lines_before), len(lines_before[-1]) + 1
    character = exc.character if isinstance(exc.character, str) else chr(exc.character)
    return Problem(
        source, Mark(line, column), "", f"the character {character!r} is not allowed in YAML"
    )


# The characters YAML treats as line breaks (a CR LF pair counts once).
_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")


def _mark(yaml_mark: Any) -> Mark | None:
    if yaml_mark is None:
        return None
    return Mark(yaml_mark.line + 1, yaml_mark.column + 1)


class _NeedPositions(Exception):  # noqa: N818 (not an error: a request)
    """A builder without positions met a problem: build again with them to report it."""


class _Builder:
    """Turns the node graph into plain data, recording positions and problems on the way.

    Without `positions`, no position is recorded and the first problem raises
    _NeedPositions instead.
    """

    def __init__(self, text: str, source: str, *, positions: bool = True) -> None:
        self._written = text
        self._lines: list[str] | None = None  # split when a compact pair must be told
        self._source = source
        self._positions = positions
        self._open: set[int] = set()  # nodes being built, to catch recursive aliases
        self._built: set[int] = set()  # nodes built once: building one again is an alias copy
        self._copying = 0  # > 0 while building an alias copy
        self._copies = 0
        self._too_deep = False
        self.value_marks: dict[Path, Mark] = {}
        self.key_marks: dict[Path, Mark] = {}
        self.problems: list[Problem] = []

    def problem(self, node: Node, message: str, path: Path = ()) -> None:
        if not self._positions:
            raise _NeedPositions
        self.problems.append(Problem(self._source, _node_mark(node), format_path(path), message))

    def build(self, node: Node, path: Path, depth: int = 0) -> Value:
        if depth > MAX_DEPTH:
            if not self._too_deep:
                self._too_deep = True
                self.problem(node, _too_deep(), path[:3])
            return None
        if self._positions:
            self.value_marks[path] = _node_mark(node)
        if id(node) in self._open:
            self.problem(node, "an alias refers to a value that contains it", path)
            return None
        copy = id(node) in self._built
        if copy or self._copying:
            self._copies += 1
            if self._copies > MAX_ALIAS_COPIES:
                if self._copies == MAX_ALIAS_COPIES + 1:  # said once
                    self.problem(
                        node,
                        f"aliases copy more than {MAX_ALIAS_COPIES} values: use fewer aliases "
                        "of large values",
                        path,
                    )
                return None
        self._built.add(id(node))
        self._open.add(id(node))
        self._copying += copy
        try:
            if isinstance(node, MappingNode):
                return self._build_mapping(node, path, depth)
            if isinstance(node, SequenceNode):
                return self._build_sequence(node, path, depth)
            return self._build_scalar(node, path)
        finally:
            self._open.discard(id(node))
            self._copying -= copy

    def _build_mapping(self, node: MappingNode, path: Path, depth: int) -> Value:
        if node.tag != MAP_TAG:
            self.problem(node, f"unsupported tag {_short(node.tag)!r} on a map", path)
        result: dict[str, Value] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key is None:
                continue
            key_path = (*path, key)
            if key in result:
                if not self._positions:
                    raise _NeedPositions
                first = self.key_marks[key_path]
                self.problem(
                    key_node,
                    f"duplicate key {key!r} (first written at line {first.line}, "
                    f"column {first.column})",
                    key_path,
                )
                continue
            if self._positions:
                self.key_marks[key_path] = _node_mark(key_node)
            result[key] = self.build(value_node, key_path, depth + 1)
        return result

    def _key(self, key_node: Node, path: Path) -> str | None:
        if isinstance(key_node, ScalarNode) and key_node.tag == STR_TAG:
            return self._text(key_node, path)
        if isinstance(key_node, ScalarNode):
            self.problem(
                key_node,
                f"keys must be strings; quote the key if you mean the text '{key_node.value}'",
                path,
            )
        else:
            self.problem(key_node, "keys must be strings, not lists or maps", path)
        return None

    def _build_sequence(self, node: SequenceNode, path: Path, depth: int) -> Value:
        if node.tag != SEQ_TAG:
            self.problem(node, f"unsupported tag {_short(node.tag)!r} on a list", path)
        result: list[Value] = []
        for item in node.value:
            if self._is_compact_pair(node, item):
                # `["-l": "{LOGFILE}"]` means the two words, not a conditional map.
                ((key_node, value_node),) = item.value
                result.append(self.build(key_node, (*path, len(result)), depth + 1))
                result.append(self.build(value_node, (*path, len(result)), depth + 1))
            else:
                result.append(self.build(item, (*path, len(result)), depth + 1))
        return result

    def _is_compact_pair(self, sequence: SequenceNode, item: Node) -> bool:
        """A `key: value` pair written in a flow sequence without braces."""
        if not (sequence.flow_style and isinstance(item, MappingNode) and len(item.value) == 1):
            return False
        if self._lines is None:
            self._lines = _LINE_BREAK.split(self._written)
        line, column = item.start_mark.line, item.start_mark.column
        written = self._lines[line][column : column + 1] if line < len(self._lines) else ""
        return written != "{"

    def _text(self, node: Node, path: Path) -> str:
        text = str(node.value)
        # libyaml rejects `\ud83d`-style escapes of UTF-16 halves; the pure Python parser
        # lets them through as lone surrogates, which cannot be encoded later. Agree with
        # libyaml.
        if not text.isascii() and any("\ud800" <= char <= "\udfff" for char in text):
            self.problem(
                node, "a \\u escape names half of a UTF-16 pair; write the character itself", path
            )
        return text

    def _build_scalar(self, node: Node, path: Path) -> Value:
        text = str(node.value)
        tag = node.tag
        if tag == STR_TAG:
            return self._text(node, path)
        if tag == NULL_TAG:
            return None
        if tag == BOOL_TAG:
            return text in ("true", "True", "TRUE")
        if tag in (INT_TAG, FLOAT_TAG):
            number = _parse_number(text, tag)
            if number is None:
                kind = "integer" if tag == INT_TAG else "number"
                if len(text) > _MAX_NUMBER:
                    message = f"a number {len(text)} characters long is too long to be read"
                else:
                    message = f"{text!r} is not a valid {kind}"
                self.problem(node, message, path)
            return number
        self.problem(node, f"unsupported tag {_short(tag)!r}", path)
        return text


def _short(tag: str) -> str:
    """Write a standard tag the way it is written in YAML: `!!set`."""
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _node_mark(node: Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _parse_number(text: str, tag: str) -> int | float | None:
    """Read an int or float scalar by the YAML 1.2 core rules (`0755` is decimal 755)."""
    # Explicitly tagged scalars (`!!int 12`) bypass the resolver, so check their form too:
    # Python's int() and float() would also take `1_000` or `infinity`.
    if len(text) > _MAX_NUMBER or not _CORE_PATTERNS[tag].match(text):
        return None
    if tag == FLOAT_TAG:
        if text[-1].isalpha():  # .inf, -.Inf, .NaN: Python spells them without the dot
            return float(text.replace(".", ""))
        return float(text)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)
