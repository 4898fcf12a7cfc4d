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

PyYAML is imported only when a text is not plain JSON or a problem needs its position
(:mod:`taskforce.config.yaml_parse`): with its libyaml extension it adds 1.4 MB to the
resident memory of a daemon whose configuration is JSON (measured: 25.4 -> 24.3 MB with
100 tasks), so this module must not import it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence

from taskforce.config.errors import ConfigError, Mark
from taskforce.config.json_fast import Known, load_json
from taskforce.config.model import MAX_ALIAS_COPIES as MAX_ALIAS_COPIES
from taskforce.config.model import MAX_DEPTH as MAX_DEPTH
from taskforce.config.model import Path as Path
from taskforce.config.model import Value


def _libyaml_installed() -> bool:
    """Whether PyYAML has its libyaml extension, found without importing PyYAML."""
    try:
        spec = importlib.util.find_spec("yaml")
    except (ImportError, ValueError):
        return False
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            if os.path.exists(os.path.join(folder, "_yaml" + suffix)):
                return True
    return False


HAVE_LIBYAML = _libyaml_installed()

# A text kept only in case a problem asks for positions is kept compressed from this
# size: a generated configuration of 10,000 tasks is 1.8 MB of text, 60 KB compressed
# (in 9 ms); a small one is kept as it is.
PACK_FROM = 64 * 1024
Packed = str | bytes


def pack(text: str) -> Packed:
    """`text` as a document keeps it (see PACK_FROM); equal texts, equal packs."""
    if len(text) < PACK_FROM:
        return text
    return zlib.compress(text.encode("utf-8", "surrogatepass"), 1)


def unpack(packed: Packed) -> str:
    if isinstance(packed, str):
        return packed
    return zlib.decompress(packed).decode("utf-8", "surrogatepass")


class Document:
    """A loaded configuration: its data and where each key and value was written.

    Positions are only needed to report problems: a document loaded without them finds
    them in its text, with the YAML loader, when first asked.
    """

    __slots__ = ("_data", "_key_marks", "_text", "_use_libyaml", "_value_marks", "source")

    def __init__(
        self,
        data: dict[str, Value],
        source: str,
        value_marks: Mapping[Path, Mark] | None = None,
        key_marks: Mapping[Path, Mark] | None = None,
        *,
        text: str | None = None,
        use_libyaml: bool = HAVE_LIBYAML,
        packed: Packed | None = None,
    ) -> None:
        self._data = data
        self.source = source
        # With a text, the marks are read from it when first needed; `packed` is what
        # pack() gives for it, when the caller has it already.
        if text is not None and packed is None:
            packed = pack(text)
        self._text = packed
        self._use_libyaml = use_libyaml
        self._value_marks: Mapping[Path, Mark] | None = None
        self._key_marks: Mapping[Path, Mark] | None = None
        if text is None:
            self._value_marks = {} if value_marks is None else value_marks
            self._key_marks = {} if key_marks is None else key_marks

    @property
    def data(self) -> dict[str, Value]:
        """The loaded data."""
        return self._data

    @data.setter
    def data(self, data: dict[str, Value]) -> None:
        self._data = data

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
        from taskforce.config.yaml_parse import load_with_positions

        assert self._text is not None
        try:
            text = unpack(self._text)
            _, values, keys = load_with_positions(text, self.source, self._use_libyaml)
        except ConfigError:  # cannot happen: only a text YAML accepts loads without them
            self._value_marks, self._key_marks = {}, {}
        else:
            self._value_marks, self._key_marks = values, keys
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
    packed: Packed | None = None,
) -> Document:
    """Parse `text` (named `source` in problems) into a Document; raise ConfigError.

    With `fast`, plain JSON takes the fast path, and positions are found only when first
    asked for; without, every position is recorded while loading. `known`: what the
    fast path learnt from the previous text of the same file (see
    :class:`~taskforce.config.json_fast.Known`). `packed`: what pack() gives for `text`,
    when the caller has it.
    """
    # libyaml does not count a byte order mark as a column and the Python parser does;
    # without it, columns mean the same to both and to the compact pair check.
    if text.startswith("\ufeff"):
        text, packed = text[1:], None
    if not fast:
        from taskforce.config.yaml_parse import load_with_positions

        data, values, keys = load_with_positions(text, source, use_libyaml)
        return Document(data, source, values, keys)
    if use_libyaml:  # the fast path gives what libyaml would
        json_data = load_json(text, MAX_DEPTH, known)
        if json_data is not None:
            return Document(json_data, source, text=text, use_libyaml=use_libyaml, packed=packed)
    from taskforce.config.yaml_parse import load_without_positions

    data, value_marks, key_marks = load_without_positions(text, source, use_libyaml)
    if value_marks is None:  # positions found again from the text when first asked
        return Document(data, source, text=text, use_libyaml=use_libyaml, packed=packed)
    return Document(data, source, value_marks, key_marks)
