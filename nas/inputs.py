"""Reading the YAML files users give (specs, search spaces, coefficients), within limits.

A hostile or mistaken file must cost a clear error, not the machine:

- a file is opened without blocking and read only if it is a regular file (a FIFO would block the
  read forever, a device like /dev/zero never ends), and only up to `MAX_INPUT_BYTES`;
- YAML is loaded safely (SafeLoader: no arbitrary objects), a key given twice is refused, and so is a
  document whose aliases stand for more than `MAX_YAML_NODES` values ("billion laughs": a few hundred
  bytes of nested anchors mean billions of values, expanded by any walk over the data) or for itself,
  or that nests deeper than `MAX_YAML_DEPTH` levels;
- a number written with an exponent but no dot (`1e-3`) is read as the number, not as the string YAML
  1.1 makes of it.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from effnet.nas.errors import InputError

MAX_INPUT_BYTES = 2 * 2**20
"""Specs and spaces are a few KiB, a grid's coefficients.yaml about 250 bytes a point; PyYAML reads about
a MiB a second, so the cap also bounds the time a file can take."""
MAX_YAML_NODES = 1_000_000
"""Values a document may stand for once its aliases are expanded: as many as the largest file holds."""
MAX_YAML_DEPTH = 100
"""Levels of nesting a document may have: a spec is three deep, a search space five. Checked before anything is
constructed, since constructing a deeper one recurses (and whether that ends in a RecursionError depends on
PyYAML's version)."""

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where PyYAML has it
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class _Refused(Exception):
    """A document refused by its shape (aliases), with the problem in words."""


class _InputLoader(_BaseLoader):
    """SafeLoader (libyaml's parser where available) refusing duplicate keys and alias bombs."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # unhashable keys are refused by SafeLoader itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (each key may appear once)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return self.construct_document(node)


FLOAT_TAG = "tag:yaml.org,2002:float"
_InputLoader.add_implicit_resolver(FLOAT_TAG, EXPONENT_FLOAT, list("-+0123456789"))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Count the values the document stands for, an alias as often as it is used, without expanding it:
    each node's count is computed once (aliases share the node they name). A node among its own
    descendants is a recursive structure. Each node's height (levels of nesting below it, aliases expanded) is
    computed the same way, once, so an anchor nested again through an alias counts at its full depth."""
    sizes: dict[int, int] = {}
    heights: dict[int, int] = {}
    entered: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        if leaving:
            entered.discard(key)
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] > MAX_YAML_NODES:
                raise _Refused(
                    f"its aliases expand it to more than {MAX_YAML_NODES:,} values (the limit); "
                    "write the data out without nested anchors"
                )
            collection = isinstance(node, (yaml.SequenceNode, yaml.MappingNode))
            heights[key] = 1 + max((heights[id(child)] for child in children), default=0) if collection else 0
            if heights[key] > MAX_YAML_DEPTH:
                raise _Refused(f"nested more than {MAX_YAML_DEPTH} levels deep (the limit); flatten the document")
            continue
        if key in sizes:
            continue
        if key in entered:
            raise _Refused(
                "an alias refers to a node that contains it (a recursive structure); write the data out plainly"
            )
        entered.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _check_nesting(text: str) -> None:
    """Refuse a document nested deeper than `MAX_YAML_DEPTH` from its parser's events, before a node is composed:
    libyaml's composer recurses in C once per level, and some tens of thousands of `[` (100 KB) overflow the
    process's stack, a crash no exception reports."""
    too_deep = f"nested more than {MAX_YAML_DEPTH} levels deep (the limit); flatten the document"
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_BaseLoader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise _Refused(too_deep)
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    except yaml.MarkedYAMLError as err:  # libyaml 0.2.5's scanner, reading ahead, stops at 1,000 levels itself
        if "nesting depth" in str(err.problem):
            raise _Refused(too_deep) from None
        raise


def parse_yaml(text: str, source: str) -> Any:
    """Safe YAML loading within the limits above, errors as one line naming the file (and line)."""
    try:
        _check_nesting(text)
        return yaml.load(text, Loader=_InputLoader)
    except _Refused as err:
        raise InputError(f"{source}: YAML refused: {err}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        raise InputError(f"{source}:{line} YAML syntax error: {err.problem or err.context}") from None
    except RecursionError:
        raise InputError(f"{source}: YAML nested too deeply to read; flatten the document") from None
    except yaml.YAMLError as err:
        raise InputError(f"{source}: YAML syntax error: {' '.join(str(err).split())}") from None


def read_text(path: str | os.PathLike[str], what: str = "file") -> str:
    """The UTF-8 text of a regular file of at most `MAX_INPUT_BYTES`; anything else is an `InputError`.
    The file is opened without blocking, so a FIFO is refused instead of waited on."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(f"{p}: no such {what}; check the path") from None
    except OSError as err:
        raise InputError(f"{p}: cannot read the {what}: {err.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise InputError(f"{p}: is a directory, expected a YAML {what}")
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
        raise InputError(f"{p}: is {kind}, not a regular file; give the path of a YAML {what}")
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(MAX_INPUT_BYTES + 1)
        except OSError as err:
            raise InputError(f"{p}: cannot read the {what}: {err.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(
            f"{p}: the {what} is larger than {MAX_INPUT_BYTES // 2**20} MiB, the limit for a YAML "
            "input; give the file effnet wrote, or trim it"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{p}: cannot read the {what}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def load_yaml(path: str | os.PathLike[str], what: str) -> Any:
    """`read_text` then `parse_yaml`: a user's YAML file as plain data."""
    return parse_yaml(read_text(path, what), str(path))
