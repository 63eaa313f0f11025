"""The README and docs/ as a reader pastes from them: specs that validate, commands that parse, working links.

Running every example end to end is the suite's job elsewhere (the worker, local mode, the report); here
each one is checked against what it names: the schema, the CLI's own options, files in the repository.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from pathlib import Path

import click
import pytest

from codeclab.cli import cli
from codeclab.experiments import validate_spec
from tests.conftest import REPO

PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def blocks(kind: str) -> list[tuple[str, str]]:
    return [(f"{page.relative_to(REPO)}", body) for page in PAGES for lang, body in FENCE.findall(page.read_text())
            if lang == kind]  # fmt: skip


def test_the_readme_is_the_short_front_door() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize(("page", "body"), blocks("json"), ids=lambda value: str(value)[:40])
def test_every_spec_in_the_docs_validates(page: str, body: str) -> None:
    document = json.loads(body)
    spec = document.get("spec", document)  # the console's execution input wraps the spec
    if "codec" in spec and "source" in spec:
        validate_spec(spec, origin=page)


def commands() -> list[tuple[str, list[str], tuple[str, ...]]]:
    """Each codeclab command of a bash block, with the files the lines before it write (`> FILE`, `tee FILE`).

    A heredoc's lines are its file's content, not commands.
    """
    found = []
    for page, body in blocks("bash"):
        written: list[str] = []
        heredoc_end = None
        for line in body.replace("\\\n", " ").splitlines():
            if heredoc_end is not None:
                heredoc_end = None if line.strip() == heredoc_end else heredoc_end
                continue
            words = shlex.split(line.split("  #")[0].strip(), comments=True) if line.strip() else []
            heredoc_end = next((w[2:] for w in words if w.startswith("<<")), None)
            command = words[: next((i for i, w in enumerate(words) if w in {"|", "&", "&&", ">", ";"}), len(words))]
            if command and command[0].endswith("bin/codeclab"):
                found.append((page, command[1:], tuple(written)))
            written += [after for before, after in itertools.pairwise(words) if before in {">", "tee"}]
    return found


@pytest.mark.parametrize(
    ("page", "words", "written"),
    commands(),
    ids=lambda value: " ".join(value)[:50] if isinstance(value, list) else value if isinstance(value, str) else "",
)
def test_every_codeclab_command_in_the_docs_parses(
    page: str, words: list[str], written: tuple[str, ...], tmp_path: Path
) -> None:
    """The command and its options exist as written (ids such as exp_… stand for real ones).

    A file the block writes before the command (a spec from a heredoc) stands in as an empty file.
    """
    for path in written:
        (tmp_path / Path(path).name).touch()
    words = [str(tmp_path / Path(word).name) if word in written else word for word in words]
    command = cli.get_command(click.Context(cli), words[0])
    assert command is not None, f"{page}: no command {words[0]!r}"
    command.make_context(words[0], list(words[1:]), resilient_parsing=False)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_and_named_file_exists(page: Path) -> None:
    text = page.read_text()
    for target in LINK.findall(text):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)}: broken link {target}"
    for named in re.findall(r"\b(examples/[\w./-]+\.(?:json|py))\b", text):
        assert (REPO / named).exists(), f"{page.relative_to(REPO)} names {named}, which does not exist"
