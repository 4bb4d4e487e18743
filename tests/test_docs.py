"""The README and the docs/ site say what the code does.

- Every command of the click group, found by walking it (so a command added later is covered),
  answers `--help` with exit 0 and a description, every option has help text, and every
  command is listed on docs/commands.md.
- Every example is exercised. `console` blocks are run: each `$ govssl ...` line must exit 0, or
  the code its `# exit N` comment gives; `RUN` (`RUN_A`, `RUN_B`) stands for the newest (two
  newest) run of the store. Blocks that need a stored run get one from a small audit and are
  slow tests; the others run by default. Every `govssl` command in an `sh` or `yaml` block is
  parsed against the click command tree (an unknown command or option, a missing argument or
  a bad value fails), and every `govssl ...` in inline code names a real command and real options.
- The README has at most 150 lines and its first screen holds exactly its two commands.
- `mkdocs build --strict` passes (skipped when the docs extra is not installed; .ci/run installs it).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from tests.conftest import REPO, fast_plan_data, run_cli

README = REPO / "README.md"
DOCS = REPO / "docs"
DOC_FILES = [README, *sorted(DOCS.rglob("*.md"))]
PLACEHOLDERS = ("RUN", "RUN_A", "RUN_B")
# code blocks whose govssl commands are parsed (console blocks are run; python is not a command line)
SHELL_FENCES = ("sh", "bash", "shell", "yaml", "yml", "")
# commands that serve until stopped: their examples are parsed, never run
LONG_RUNNING = {("serve",)}


def commands(group: click.Group | None = None, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command and group under ``group`` (default: govssl's), depth first, with its path."""
    if group is None:
        from govssl.cli import cli as group
    found = []
    for name, command in sorted(group.commands.items()):
        found.append(((*path, name), command))
        if isinstance(command, click.Group):
            found += commands(command, (*path, name))
    return found


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


# ---------------------------------------------------------------------------------------- --help


@pytest.mark.parametrize("path", [p for p, _ in commands()], ids=" ".join)
def test_help__every_command_answers_with_its_description_and_options(capsys, path):
    command = dict(commands())[path]
    code, out, err = run_cli(capsys, *path, "--help")
    assert code == 0, err
    assert out.startswith(f"Usage: govssl {' '.join(path)}"), out[:200]
    assert (command.help or "").strip(), f"govssl {' '.join(path)} has no description"
    assert command.help.split()[0] in out
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"govssl {' '.join(path)} {param.opts[0]} has no help text"
            assert param.opts[-1] in out


def test_help__the_group_itself(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "Exit codes" in out
    for path, _ in commands():
        if len(path) == 1:
            assert path[0] in out


def test_commands_page__lists_every_command():
    page = (DOCS / "commands.md").read_text(encoding="utf-8")
    missing = [" ".join(path) for path, command in commands()
               if not isinstance(command, click.Group) and f"govssl {' '.join(path)}" not in page]
    assert not missing, f"docs/commands.md does not list: {missing}"


# -------------------------------------------------------------------------------------- examples


@dataclass(frozen=True)
class Example:
    file: Path
    line: int  # 1-based line of the command in its file
    kind: str  # "console", "code" (an sh/yaml block) or "inline"
    text: str  # from "govssl" on

    def __str__(self) -> str:
        return f"{rel(self.file)}:{self.line}"


@dataclass(frozen=True)
class Block:
    file: Path
    line: int
    commands: tuple[Example, ...]

    def __str__(self) -> str:
        return f"{rel(self.file)}:{self.line}"


_SHELL_BREAK = re.compile(r"\s(?:&&|\|\||;|\|)\s")
_GOVSSL = re.compile(r"(?:^|(?<=[\s:(]))(?:[\w./-]*/)?govssl(?=\s|$)")


def _tokens(path: Path):
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").parse(path.read_text(encoding="utf-8"))


def console_blocks(path: Path) -> list[Block]:
    blocks = []
    for token in _tokens(path):
        if token.type != "fence" or token.info.strip() != "console":
            continue
        first = token.map[0] + 2  # the line after the fence
        cmds = [Example(path, first + i, "console", line[2:].strip())
                for i, line in enumerate(token.content.splitlines()) if line.startswith("$ ")]
        blocks.append(Block(path, token.map[0] + 1, tuple(cmds)))
    return blocks


def code_examples(path: Path) -> list[Example]:
    """Every govssl command of the file's non-console code blocks (continuation lines joined)."""
    found = []
    for token in _tokens(path):
        if token.type != "fence" or token.info.strip() not in SHELL_FENCES:
            continue
        raw = token.content.splitlines()
        i = 0
        while i < len(raw):
            start, line = i, raw[i]
            while line.endswith("\\") and i + 1 < len(raw):
                i += 1
                line = line[:-1] + " " + raw[i].strip()
            i += 1
            match = _GOVSSL.search(line)
            if match and not line.lstrip().startswith("#"):
                text = _SHELL_BREAK.split(line[match.start():])[0]
                found.append(Example(path, token.map[0] + 2 + start, "code", re.sub(r"^\S*govssl", "govssl", text)))
    return found


def inline_examples(path: Path) -> list[Example]:
    found = []
    for token in _tokens(path):
        if token.type != "inline":
            continue
        for child in token.children or []:
            if child.type == "code_inline" and re.match(r"govssl\s+\S", child.content):
                found.append(Example(path, token.map[0] + 1, "inline", " ".join(child.content.split())))
    return found


def _comment(line: str) -> tuple[str, int]:
    """The command without its trailing comment, and the exit code the comment expects (0)."""
    body = shlex.split(line, comments=True)
    expected = re.search(r"#\s*exit\s+(\d+)", line)
    return shlex.join(body), int(expected.group(1)) if expected else 0


def resolve(argv: list[str], where: object) -> tuple[tuple[str, ...], click.Command, list[str]]:
    """The command ``argv`` (after 'govssl') names, and the arguments left for it."""
    from govssl.cli import cli

    command, path, rest = cli, (), list(argv)
    while isinstance(command, click.Group):
        if command.invoke_without_command and (not rest or rest[0].startswith("-")):
            break  # a group that is also a command (`govssl attest --framework ...`)
        assert rest and not rest[0].startswith("-"), f"{where}: `govssl {' '.join(argv)}` names no command"
        name = rest.pop(0)
        assert name in command.commands, f"{where}: `govssl {' '.join((*path, name))}` is not a command"
        command, path = command.commands[name], (*path, name)
    return path, command, rest


def parse(example: Example, argv: list[str] | None = None) -> tuple[str, ...]:
    """Parse the example's arguments as its command would (without running it)."""
    argv = shlex.split(example.text, comments=True)[1:] if argv is None else argv
    path, command, rest = resolve(argv, example)
    try:
        with command.make_context(f"govssl {' '.join(path)}", rest):
            pass
    except click.MissingParameter as exc:
        pytest.fail(f"{example}: `{example.text}`: {exc.format_message()}")
    except click.BadParameter as exc:
        if not isinstance(getattr(exc.param, "type", None), (click.Path, click.File)):
            pytest.fail(f"{example}: `{example.text}`: {exc.format_message()}")
        # else: a file of the reader's, which need not exist here
    except click.UsageError as exc:
        pytest.fail(f"{example}: `{example.text}`: {exc.format_message()}")
    return path


ALL_CONSOLE = [block for path in DOC_FILES for block in console_blocks(path)]
ALL_CODE = [example for path in DOC_FILES for example in code_examples(path)]
ALL_INLINE = [example for path in DOC_FILES for example in inline_examples(path)]


def test_examples__are_found():
    """The extraction itself: the README's tour and first command, and the docs' examples."""
    assert any(b.file == README and len(b.commands) >= 4 for b in ALL_CONSOLE)
    assert any(e.file == README and e.text == "govssl audit audits/adult-income.yaml" for e in ALL_CODE)
    assert any(e.file.name == "ci.md" and e.text.startswith("govssl gate --model") for e in ALL_CODE)
    assert any(e.file.name == "commands.md" and e.text.startswith("govssl report RUN") for e in ALL_INLINE)


@pytest.mark.parametrize("example", [e for b in ALL_CONSOLE for e in b.commands] + ALL_CODE, ids=str)
def test_examples__every_command_in_a_code_block_parses(example):
    if example.kind == "console":
        assert not re.search(r"[|<>;`]|\$\(|&&", _comment(example.text)[0]), (
            f"{example}: a console example is one govssl command (shell pipes, redirections and "
            f"substitutions belong in an sh block)")
        assert example.text.startswith("govssl "), f"{example}: console examples run govssl only"
    parse(example)


@pytest.mark.parametrize("example", ALL_INLINE, ids=str)
def test_examples__every_inline_synopsis_names_real_options(example):
    words = example.text.split()
    import itertools

    # the command is the words before the first option, argument or placeholder
    leading = list(itertools.takewhile(lambda w: not w.startswith(("[", "-")) and not w.isupper(), words[1:]))
    path, command, _ = resolve(leading[:3], example)
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", example.text))
    unknown = named - known - {"--help"}
    assert not unknown, f"{example}: `govssl {' '.join(path)}` has no option {sorted(unknown)}"


def _needs_run(block: Block) -> int:
    """How many stored runs the block's placeholders need."""
    words = {w for e in block.commands for w in shlex.split(e.text, comments=True)}
    return 2 if "RUN_A" in words or "RUN_B" in words else 1 if "RUN" in words else 0


def _runs_audit(block: Block) -> bool:
    return any(shlex.split(e.text, comments=True)[1:2] == ["audit"] for e in block.commands)


def _params(blocks):
    for block in blocks:
        slow = _runs_audit(block) or _needs_run(block) > 0
        yield pytest.param(block, id=str(block), marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("block", list(_params(ALL_CONSOLE)))
def test_examples__console_blocks_run(capsys, monkeypatch, tmp_path, block, request):
    """Each block in a fresh folder holding the repository's audits/ and policies/, with the
    default store there; a block that names RUN gets its runs from a small audit first."""
    monkeypatch.delenv("GOVSSL_DB_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    for name in ("audits", "policies"):
        (tmp_path / name).symlink_to(REPO / name, target_is_directory=True)
    runs = []
    needed = _needs_run(block)
    if needed:
        import yaml

        train, test = request.getfixturevalue("adult_csvs")
        plan = tmp_path / "small-plan.yaml"
        plan.write_text(yaml.safe_dump(fast_plan_data(train, test), sort_keys=False), encoding="utf-8")
        for _ in range(needed):
            code, out, err = run_cli(capsys, "audit", str(plan), "--quiet")
            assert code in (0, 1), (out, err)
        from govssl.store import AuditStore

        runs = [r["run_id"] for r in AuditStore(None, read_only=True).find_runs()]  # newest first
    values = {"RUN": runs[:1], "RUN_B": runs[:1], "RUN_A": runs[1:2]}
    for example in block.commands:
        command, expected = _comment(example.text)
        argv = shlex.split(command)[1:]
        argv = [values[w][0] if w in PLACEHOLDERS and values[w] else w for w in argv]
        path = parse(example, argv)
        if path in LONG_RUNNING:
            continue
        code, out, err = run_cli(capsys, *argv)
        assert code == expected, f"{example}: `{example.text}` exited {code}, expected {expected}\n{out}\n{err}"
        assert "Traceback" not in out + err


# ---------------------------------------------------------------------------------------- README


def test_readme__at_most_150_lines_with_its_two_commands_on_the_first_screen():
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines"
    fences = [t for t in _tokens(README) if t.type == "fence"]
    first_two = fences[:2]
    assert [t.info for t in first_two] == ["sh", "sh"]
    assert all(t.map[1] <= 30 for t in first_two), "the two commands are on the first screen (30 lines)"
    setup, tests = (t.content.strip() for t in first_two)
    assert "pip install -c constraints.txt -e '.[test]'" in setup and setup.endswith(
        "govssl audit audits/adult-income.yaml")
    assert tests == ".venv/bin/python -m pytest"
    screen = "\n".join(lines[:30])
    assert screen.count("```sh") == 2 and "```console" not in screen, "nothing but the two commands up there"
    for target in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (REPO / target).is_file(), f"README links {target}, which does not exist"


def test_ci__installs_the_docs_extra_and_builds_the_site_strictly():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    extras = re.search(r"-e '\.\[([\w,]+)\]'", ci)
    assert extras and {"test", "docs"} <= set(extras.group(1).split(",")) and "mkdocs build --strict" in ci


def test_mkdocs__builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[docs]') is not installed")
    pytest.importorskip("material", reason="mkdocs-material (the docs extra) is not installed")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").is_file() and (tmp_path / "site" / "documents" / "index.html").is_file()
