"""Local mode finds the CDK app it synthesizes in a checkout, as `cdk` and `git` find theirs, never through the
package's own location; away from a checkout it says what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from codeclab.local.template import CDK_APP_ENV, CdkAppNotFound, cdk_app_dir, default_cdk_out
from tests.conftest import REPO


@pytest.fixture(autouse=True)
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CDK_APP_ENV, raising=False)


def test_found_from_the_checkout_and_any_folder_below_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for where in (REPO, REPO / "docs", REPO / "codeclab" / "local"):
        monkeypatch.chdir(where)
        assert cdk_app_dir() == REPO
    assert default_cdk_out() == REPO / "cdk.out"


def test_outside_a_checkout_the_error_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CdkAppNotFound) as info:
        cdk_app_dir()
    assert str(info.value) == (
        f"no cdk.json in {tmp_path} or above: local mode runs from a codeclab checkout; cd into it or set "
        f"{CDK_APP_ENV} to its path"
    )


def test_the_variable_names_the_checkout_from_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CDK_APP_ENV, str(REPO))
    assert cdk_app_dir() == REPO


def test_a_cdk_json_of_another_app_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "cdk.json").write_text("{}")
    (tmp_path / "app.py").write_text("")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CdkAppNotFound, match=r"is not a codeclab checkout \(it has no stacks, lambdas, codeclab/"):
        cdk_app_dir()
    monkeypatch.setenv(CDK_APP_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(CdkAppNotFound, match=rf"^{CDK_APP_ENV}=.*nowhere: .* is not a codeclab checkout"):
        cdk_app_dir()


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [["codeclab.cli", "run", str(REPO / "examples" / "x264.json")], ["codeclab.demo"]],
    ids=["codeclab run", "demo"],
)
def test_local_mode_outside_a_checkout_is_one_line_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(CDK_APP_ENV, None)
    done = subprocess.run([sys.executable, "-m", *command], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "local mode runs from a codeclab checkout" in output
    assert "Traceback" not in output
