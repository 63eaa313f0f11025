"""The first layer: a static check of the submitted source, with errors that name the line.

It rejects imports outside the allow-list and the introspection names that sandbox escapes
are built from. It is a fast, readable gate, not the wall: an escape it misses still meets
the child process's seccomp filter, rlimits, scrubbed environment and private folder.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from importlib.machinery import BYTECODE_SUFFIXES, EXTENSION_SUFFIXES
from pathlib import Path

from codeclab.worker.errors import CodecFailure, SandboxViolation

DEFAULT_ALLOWED_IMPORTS = frozenset(
    {
        "numpy", "torch", "cv2", "math", "json", "time", "zlib", "struct", "itertools", "functools",
        "collections", "dataclasses", "typing", "fractions", "bisect", "heapq", "array", "io",
        "base64", "binascii", "lzma", "bz2", "statistics", "random", "enum", "abc", "copy",
        "__future__",  # compiler directives, `from __future__ import annotations` above all: no reach
    }
)  # fmt: skip
# Attribute names that lead from an object to frames, globals, builtins or the class tree.
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "__subclasses__", "__globals__", "__builtins__", "__code__", "__closure__", "__class__", "__bases__",
        "__base__", "__mro__", "mro", "__dict__", "__getattribute__", "__reduce__", "__reduce_ex__",
        "__import__", "__loader__", "__spec__", "__self__", "__func__", "__init_subclass__",
        "gi_frame", "gi_code", "cr_frame", "ag_frame", "f_globals", "f_locals", "f_back", "f_builtins",
        "tb_frame", "tb_next", "func_globals",
    }
)  # fmt: skip
FORBIDDEN_NAMES = frozenset(
    {"eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars", "getattr", "setattr",
     "delattr", "breakpoint", "input", "help", "exit", "quit", "__builtins__", "__loader__", "__spec__"}
)  # fmt: skip


def allowed_imports(extra: Iterable[str] = ()) -> frozenset[str]:
    return DEFAULT_ALLOWED_IMPORTS | frozenset(extra)


def check_source(source: str, allowed: frozenset[str]) -> list[str]:
    """Raise SandboxViolation for the first forbidden construct; return the top-level modules imported."""
    tree = _parse(source, "custom codec")
    imported = _check_tree(tree, allowed, "custom codec", own=None)
    if not _defines(tree, "encode") or not _defines(tree, "decode"):
        raise SandboxViolation(
            "custom codec: define both encode(frames, params) and decode(bitstream, header)", "CODEC_ERROR"
        )
    return imported


def check_package(root: Path, allowed: frozenset[str]) -> list[str]:
    """Every module of a codec package, checked as inline code is, except that the package's own modules and
    relative imports are allowed. Returns the other top-level modules imported (the worker preloads them)."""
    own = own_modules(root)
    for path in sorted(root.rglob("*")):
        if path.name == "__pycache__" or path.name.endswith((*BYTECODE_SUFFIXES, *EXTENSION_SUFFIXES)):
            raise SandboxViolation(
                f"codec package file {path.relative_to(root)}: compiled modules and bytecode are not allowed (Python "
                "would import them unchecked); ship the .py source, and take __pycache__ out of the package"
            )
    imported: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        where = f"codec package file {path.relative_to(root)}"
        imported |= set(_check_tree(_parse(path.read_text(encoding="utf-8"), where), allowed | own, where, own))
    return sorted(imported)


def own_modules(root: Path) -> frozenset[str]:
    """The modules and packages at the top of a codec package folder: its own, always importable."""
    return frozenset(p.stem if p.is_file() else p.name for p in root.iterdir() if p.suffix == ".py" or p.is_dir())


def _parse(source: str, where: str) -> ast.Module:
    try:
        return ast.parse(source, filename="<codec>")
    except SyntaxError as exc:
        raise CodecFailure(f"{where} line {exc.lineno}: syntax error: {exc.msg}") from None


def _check_tree(tree: ast.Module, allowed: frozenset[str], where: str, own: frozenset[str] | None) -> list[str]:
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            imported += _allowed_roots(node, allowed, where, relative=own is not None)
        _check_names(node, where)
    return sorted(set(imported) - (own or frozenset()))


def _allowed_roots(node: ast.Import | ast.ImportFrom, allowed: frozenset[str], where: str, relative: bool) -> list[str]:
    roots = []
    for module in _imports(node, where, relative):
        root = module.split(".")[0]
        if root not in allowed and module not in allowed:
            raise SandboxViolation(
                f"{where} line {node.lineno}: import of {module!r} is not allowed. Allowed: "
                f"{', '.join(sorted(allowed))}. If you trust it, add it to codec.allow_imports in the spec "
                f"(codec check: --allow-import {root})."
            )
        roots.append(root)
    return roots


def _imports(node: ast.Import | ast.ImportFrom, where: str, relative: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level and relative:
        return []  # inside a package: resolves to the package's own modules
    if node.level:
        raise SandboxViolation(f"{where} line {node.lineno}: relative imports are not allowed")
    return [node.module or ""]


def _check_names(node: ast.AST, where: str) -> None:
    if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
        raise SandboxViolation(f"{where} line {node.lineno}: attribute {node.attr!r} is not allowed (introspection)")
    if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
        raise SandboxViolation(f"{where} line {node.lineno}: {node.id!r} is not allowed in codec code")
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in FORBIDDEN_ATTRIBUTES:
        raise SandboxViolation(f"{where} line {node.lineno}: the string {node.value!r} is not allowed (introspection)")


def _defines(tree: ast.Module, name: str) -> bool:
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body)
