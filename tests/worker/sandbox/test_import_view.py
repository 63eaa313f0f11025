"""Under Landlock, a library's optional import of a package the sandbox hides must look absent, not crash."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from codeclab.worker.sandbox.import_view import ReadableOnly

REPO = Path(__file__).resolve().parents[3]
STDLIB = Path(sysconfig.get_path("stdlib"))
# numpy.f2py runs `try: import charset_normalizer / except ImportError`; charset_normalizer is installed
# here (requests needs it) and is not among numpy's requirements, so the sandbox does not make it readable.
PROBE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from codeclab.worker.sandbox import import_view, landlock, readable
    rules = readable.rules(["numpy"])
    landlock.restrict(rules, landlock.abi_version(), scope=False)
    if sys.argv[1] == "with-view":
        import_view.install([r.path for r in rules if r.access is not landlock.Access.LIST])
    import numpy.f2py
    print("imported", numpy.f2py.crackfortran.charset_normalizer)
    """
)


def test_a_package_outside_the_readable_folders_is_not_found_and_readable_ones_are_left_to_python() -> None:
    view = ReadableOnly([STDLIB])
    with pytest.raises(ModuleNotFoundError, match="not readable in the codec sandbox") as raised:
        view.find_spec("charset_normalizer", None)
    assert raised.value.name == "charset_normalizer"
    assert view.find_spec("json", None) is None  # the stdlib is readable: the usual finders load it
    assert view.find_spec("no_such_module_anywhere", None) is None  # absent anyway: the usual error
    assert view.find_spec("numpy.linalg", ["/anything"]) is None  # a submodule: its package was readable


def run_probe(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_an_optional_import_of_a_hidden_package_looks_absent_under_landlock() -> None:
    proc = run_probe("with-view")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "imported None"  # numpy took its fallback, as on a host without the package


def test_control_without_the_view_the_same_import_crashes_on_the_file_landlock_refuses() -> None:
    proc = run_probe("without")
    assert proc.returncode != 0 and "PermissionError" in proc.stderr and "charset_normalizer" in proc.stderr
