"""Reading hostile input: JSON, JSON lines and YAML that fail with a clear error.

Every file or message the hub reads from outside (feeds, advisories, bundles,
agreements, trust stores, runtime files, dump files, event lines) goes through
these readers.  A bad input raises :class:`InputError`, which names the source,
the line where there is one, the field and the reason; nothing here ends in a
traceback, a hang or unbounded memory:

- JSON: duplicate keys are an error (never silently one of them); integers and
  floats longer than :data:`MAX_NUMBER_CHARS` characters, ``NaN`` and
  ``Infinity``, nesting deeper than ``max_depth``, lone UTF-16 surrogates and text
  that is not UTF-8 are refused.
- YAML: the same, plus aliases whose expansion exceeds :data:`MAX_YAML_NODES`
  nodes ("billion laughs"), scalars over :data:`MAX_YAML_SCALAR` characters and
  files over ``max_bytes`` are refused before anything is built from them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import yaml
from intelmq_crossborder.core.errors import CrossBorderError

__all__ = ["InputError", "loads_json", "read_json", "iter_json_lines", "loads_yaml", "read_yaml",
           "read_text", "MAX_NUMBER_CHARS", "MAX_DEPTH", "MAX_YAML_NODES", "MAX_YAML_SCALAR", "MAX_FILE_BYTES"]

MAX_NUMBER_CHARS = 64          # a JSON number longer than this is refused (int('9'*5000) raises anyway)
MAX_DEPTH = 128                # nesting of objects and arrays
MAX_YAML_NODES = 100_000       # nodes after alias expansion
MAX_YAML_SCALAR = 256 * 1024   # characters in one YAML scalar
MAX_FILE_BYTES = 64 * 1024 * 1024


class InputError(CrossBorderError, ValueError):
    """A bad input: ``source`` (a file name or a description), ``line`` (1-based, or None),
    ``field`` (a JSON path such as ``document.tracking.id``, or None) and ``reason``."""

    def __init__(self, source, reason: str, *, line: Optional[int] = None, field: Optional[str] = None):
        self.source = str(source)
        self.line = line
        if field is not None and len(field) > 200:
            field = field[:200] + "..."
        self.field = field
        self.reason = reason
        where = self.source + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {'field ' + field + ': ' if field else ''}{reason}")


_KINDS = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
          float: "a number"}


def kind_of(value: Any, none: str = "nothing") -> str:
    """What a JSON/YAML value is, for error messages ("a mapping", "a list", ...); ``none`` names null."""
    if value is None:
        return none
    return _KINDS.get(type(value), f"a {type(value).__name__}")


def _path(parent: str, key) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def _number(kind):
    def parse(text: str):
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
        return kind(text)
    return parse


def _constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _pairs(pairs: list) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=_number(int), parse_float=_number(float),
                            parse_constant=_constant)


def check_tree(value: Any, source, *, line: Optional[int] = None, max_depth: int = MAX_DEPTH,
               root: str = "") -> None:
    """Refuse nesting deeper than ``max_depth`` and strings that are not valid Unicode
    (lone surrogates), iteratively: a hostile document cannot exhaust the stack."""
    stack = [(root, value, 0)]
    while stack:
        where, item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(source, "a string with a lone UTF-16 surrogate (not valid Unicode)",
                                 line=line, field=where or None) from None
        elif isinstance(item, dict):
            if depth >= max_depth:
                raise InputError(source, f"nested more than {max_depth} levels deep", line=line,
                                 field=where or None)
            for key, sub in item.items():
                if isinstance(key, str):
                    try:
                        key.encode("utf-8")
                    except UnicodeEncodeError:
                        raise InputError(source, "a key with a lone UTF-16 surrogate", line=line,
                                         field=where or None) from None
                stack.append((_path(where, key), sub, depth + 1))
        elif isinstance(item, list):
            if depth >= max_depth:
                raise InputError(source, f"nested more than {max_depth} levels deep", line=line,
                                 field=where or None)
            stack.extend((_path(where, i), sub, depth + 1) for i, sub in enumerate(item))


def _decode(data: Union[str, bytes], source, line: Optional[int]) -> str:
    if isinstance(data, str):
        return data
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(source, f"not UTF-8 text (invalid byte at offset {exc.start})", line=line) from None
    return text[1:] if text.startswith("\ufeff") else text


def loads_json(data: Union[str, bytes], source="<input>", *, line: Optional[int] = None,
               max_depth: int = MAX_DEPTH) -> Any:
    """Parse one JSON document (see the module docstring for what is refused)."""
    text = _decode(data, source, line)
    try:
        value, end = _DECODER.raw_decode(text, _skip_ws(text, 0))
    except json.JSONDecodeError as exc:
        raise InputError(source, f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                         line=line if line is not None else exc.lineno) from None
    except RecursionError:
        raise InputError(source, "not readable JSON: nested too deeply", line=line) from None
    except ValueError as exc:          # from the hooks: duplicate key, long number, NaN
        raise InputError(source, f"not accepted JSON: {exc}", line=line) from None
    if text[_skip_ws(text, end):]:
        raise InputError(source, f"not valid JSON: extra data after the document (offset {end})", line=line)
    check_tree(value, source, line=line, max_depth=max_depth)
    return value


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\n\r":
        pos += 1
    return pos


def read_text(path, *, max_bytes: int = MAX_FILE_BYTES, what: str = "file") -> str:
    """A UTF-8 file's text, or :class:`InputError` (missing, a directory, unreadable,
    too large, not UTF-8)."""
    path = Path(path)
    try:
        if path.is_dir():
            raise InputError(path, f"is a directory, not a {what}")
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(path, f"{size} bytes is larger than the {max_bytes} bytes accepted for a {what}")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read the {what}: {exc.strerror or exc}") from None
    return _decode(data, path, None)


def read_json(path, *, max_bytes: int = MAX_FILE_BYTES, max_depth: int = MAX_DEPTH, what: str = "file") -> Any:
    """Read and parse a JSON file."""
    return loads_json(read_text(path, max_bytes=max_bytes, what=what), path, max_depth=max_depth)


def iter_json_lines(lines, source="<input>", *, max_depth: int = MAX_DEPTH) -> Iterator[tuple]:
    """``(line number, value or InputError)`` for each non-blank line of ``lines`` (an
    iterable of str or bytes, such as an open file): a bad line is reported, never fatal."""
    stream = iter(lines)
    number = 0
    while True:
        try:
            raw = next(stream)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            yield number + 1, InputError(source, f"not UTF-8 text ({exc.reason})", line=number + 1)
            return
        number += 1
        if not raw.strip():
            continue
        try:
            yield number, loads_json(raw, source, line=number, max_depth=max_depth)
        except InputError as exc:
            yield number, exc


# --- YAML ----------------------------------------------------------------------------------

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):
    """SafeLoader that refuses duplicate keys (instead of keeping the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                raise yaml.constructor.ConstructorError(None, None, "a mapping key that is not a scalar",
                                                        key_node.start_mark) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _check_nodes(root, source, max_depth: int) -> None:
    """Count the nodes of the composed YAML as they would be after alias expansion
    (an alias is the same node object, so memoising by id keeps this linear), and
    check nesting and scalar sizes, before anything is constructed."""
    sizes: dict = {}
    stack = [(root, 0, False)]
    while stack:
        node, depth, done = stack.pop()
        if id(node) in sizes and not done:
            continue
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > MAX_YAML_SCALAR:
                raise InputError(source, f"a value of {len(node.value)} characters (at most {MAX_YAML_SCALAR})",
                                 line=node.start_mark.line + 1)
            if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
                raise InputError(source, f"a number of {len(node.value)} characters (at most {MAX_NUMBER_CHARS})",
                                 line=node.start_mark.line + 1)
            sizes[id(node)] = 1
            continue
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
        if done:
            total = 1 + sum(sizes.get(id(c), 1) for c in children)
            if total > MAX_YAML_NODES:
                raise InputError(source, f"expands to more than {MAX_YAML_NODES} values (aliases nested into "
                                         "each other, a 'billion laughs' document)", line=node.start_mark.line + 1)
            sizes[id(node)] = total
            continue
        if depth >= max_depth:
            raise InputError(source, f"nested more than {max_depth} levels deep", line=node.start_mark.line + 1)
        sizes[id(node)] = 1          # placeholder: a cycle counts once, then the real size replaces it
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)


def loads_yaml(data: Union[str, bytes], source="<input>", *, max_depth: int = MAX_DEPTH,
               max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Parse one YAML document with the safe loader (see the module docstring)."""
    text = _decode(data, source, None)
    if len(text) > max_bytes:
        raise InputError(source, f"{len(text)} characters is larger than the {max_bytes} accepted")
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, source, max_depth)
        value = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "nesting depth" in problem:
            problem = f"nested too deeply ({problem})"
        raise InputError(source, f"not valid YAML: {problem}",
                         line=mark.line + 1 if mark is not None else None) from None
    except RecursionError:
        raise InputError(source, "not readable YAML: nested too deeply") from None
    except InputError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        # a scalar its tag cannot build: an integer of thousands of digits, !!timestamp 2001-99-99
        raise InputError(source, f"not valid YAML: a value that cannot be read ({str(exc)[:200]})") from None
    finally:
        loader.dispose()
    check_tree(value, source, max_depth=max_depth)
    return value


def read_yaml(path, *, max_bytes: int = 8 * 1024 * 1024, max_depth: int = MAX_DEPTH, what: str = "file") -> Any:
    """Read and parse a YAML file (refused above ``max_bytes``, before it is parsed)."""
    return loads_yaml(read_text(path, max_bytes=max_bytes, what=what), path, max_depth=max_depth,
                      max_bytes=max_bytes)

