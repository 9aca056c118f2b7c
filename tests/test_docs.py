"""The README and docs/ say only what the repository can do: every shell command in a
```bash / ```sh / ```console block is valid bash whose scripts exist, whose `grmu` subcommands
and options `grmu --help` lists, whose `dvc` command line DVC's own parser accepts, and whose
`-S key=value` names a key of params.yaml; every ```yaml block parses; every ```python block
compiles; every relative link points to a file of the repository (and, into a markdown file,
to one of its headings). Nothing is run: no DVC stage, no script."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import re
import shlex
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "console"}
PYTHON = re.compile(r"python(3(\.\d+)?)?$")
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
KEYWORDS = {"do", "then", "else", "elif", "if", "while", "until", "!", "time", "exec", "{", "}"}


# --------------------------------------------------------------------------- markdown parsing


def blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, body, line number of the opening fence) of every fenced code block."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(2), m.group(3).lower(), i + 1
        j = i + 1
        while j < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]):
            j += 1
        out.append((lang, "\n".join(lines[i + 1 : j]) + "\n", start))
        i = j + 1
    return out


def prose(text: str, inline: bool = True) -> str:
    """The text outside fenced code blocks (line numbers kept), with inline code blanked out
    unless ``inline`` is false."""
    lines, fence = text.splitlines(), None
    for k, line in enumerate(lines):
        m = re.match(r"^\s*(`{3,}|~{3,})", line)
        if fence is None and m:
            fence, lines[k] = m.group(1), ""
        elif fence is not None:
            if re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", line):
                fence = None
            lines[k] = ""
    text = "\n".join(lines)
    return re.sub(r"`[^`\n]*`", lambda m: " " * len(m.group()), text) if inline else text


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen, out = {}, set()
    for line in prose(path.read_text(), inline=False).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def link_errors(text: str, where: Path) -> list[str]:
    """Every relative link of ``text`` (a markdown file in ``where``'s folder) that points to no
    file of the repository, or to a heading its markdown file lacks."""
    errors = []
    for n, line in enumerate(prose(text).splitlines(), 1):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, …
                continue
            path, _, anchor = target.partition("#")
            file = (where.parent / path).resolve() if path else where.resolve()
            if not file.exists() or ROOT not in [file, *file.parents]:
                errors.append(f"{where.name}:{n}: link to {target}: no such file in the repository")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                errors.append(f"{where.name}:{n}: link to {target}: {file.name} has no heading #{anchor}")
    return errors


# --------------------------------------------------------------------------- shell commands


def command_lines(body: str, lang: str) -> list[tuple[int, str]]:
    """(line offset, command) with backslash continuations joined; for ```console only the
    lines after a `$ ` prompt."""
    out, pending, first = [], "", 0
    for k, line in enumerate(body.splitlines()):
        if lang == "console" and not pending:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if not pending:
            first = k
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip() and not line.strip().startswith("#"):
            out.append((first, line))
    if pending.strip():
        out.append((first, pending))
    return out


def simple_commands(line: str) -> list[list[str]]:
    """The words of each simple command of a shell line (split at ; & | && || ( ) and at
    command substitution; the word after a redirection is dropped)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split, lex.commenters = True, "#"
    commands, words, skip = [], [], False
    for tok in lex:
        if skip:
            skip = False
        elif re.fullmatch(r"[;&|()]+", tok):
            commands.append(words)
            words = []
        elif re.fullmatch(r"[<>]+&?|&>", tok):
            skip = True
        else:
            words.append(tok[:-1] if tok.endswith("$") and "=" in tok else tok)  # cmd=$(…: the assignment
    commands.append(words)
    return [w for w in commands if w]


@lru_cache(maxsize=None)
def grmu_help(*args: str) -> str:
    from grmu.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*args, "--help"])
    return out.getvalue()


def grmu_subcommands() -> set[str]:
    found = re.search(r"\{([\w,-]+)\}", grmu_help())
    assert found, grmu_help()
    return set(found.group(1).split(","))


@lru_cache(maxsize=None)
def params_yaml() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def has_param(key: str) -> bool:
    node = params_yaml()
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def dvc_error(args: list[str]) -> str | None:
    """DVC's own parser on ``args``: None when it accepts them, else its message."""
    from dvc.cli import DvcParserError, parse_args

    class Messages(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())

    said, handler, logger = [], Messages(), logging.getLogger("dvc")
    # another test may have run DVC in this process: its logger then has a level (quiet runs) and
    # handlers bound to that test's (closed) streams; only ours listens while the parser runs
    saved = logger.level, logger.disabled, logger.propagate, logger.handlers[:]
    logger.setLevel(logging.DEBUG)
    logger.disabled, logger.propagate, logger.handlers = False, False, [handler]
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            parse_args(args)
    except (DvcParserError, SystemExit):
        return "; ".join(said) or "DVC's parser refuses it"
    finally:
        level, logger.disabled, logger.propagate, logger.handlers = saved
        logger.setLevel(level)
    return None


def exists_in_repo(path: str) -> bool:
    return "$" in path or "<" in path or (ROOT / path).exists()


def module_exists(name: str) -> bool:
    if name.split(".")[0] == "grmu":
        base = ROOT / "src" / Path(*name.split("."))
        return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()
    return importlib.util.find_spec(name.split(".")[0]) is not None


def command_errors(words: list[str]) -> list[str]:
    """What is wrong with one simple command: a script, module, grmu subcommand or option, dvc
    command line or params key that does not exist."""
    while words and (ASSIGNMENT.match(words[0]) or words[0] in KEYWORDS):
        words = words[1:]
    if words[:1] == ["nice"]:
        words = words[3:] if words[1:2] == ["-n"] else words[1:]
    if not words:
        return []
    cmd, args = words[0], words[1:]
    name = cmd.rsplit("/", 1)[-1]
    errors = []
    if "/" in cmd and not cmd.startswith((".venv/", "/", "~", "$")) and not exists_in_repo(cmd):
        errors.append(f"{cmd}: no such file in the repository")
    if PYTHON.fullmatch(name):
        rest = [a for a in args]
        while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c"):
            rest = rest[1:]
        if rest[:1] == ["-m"] and len(rest) > 1 and not module_exists(rest[1]):
            errors.append(f"python -m {rest[1]}: no such module")
        elif rest and rest[0] not in ("-m", "-c") and not exists_in_repo(rest[0]):
            errors.append(f"python {rest[0]}: no such script in the repository")
    elif name in ("bash", "sh"):
        rest = [a for a in args if not a.startswith("-")]
        if "-c" not in args and rest and not exists_in_repo(rest[0]):
            errors.append(f"{name} {rest[0]}: no such script in the repository")
    elif name == "grmu":
        subs = grmu_subcommands()
        if not args or args[0] not in subs:
            errors.append(f"grmu {' '.join(args[:1])}: not a subcommand of `grmu --help` ({', '.join(sorted(subs))})")
        else:
            listed = set(re.findall(r"(--[\w-]+)", grmu_help(args[0])))
            errors += [
                f"grmu {args[0]} {a}: not an option of `grmu {args[0]} --help`"
                for a in args[1:]
                if a.startswith("--") and a.split("=")[0] not in listed
            ]
    elif name == "dvc":
        bad = dvc_error(args)
        if bad:
            errors.append(f"dvc {' '.join(args)}: {bad}")
        for flag, value in zip(args, args[1:]):
            if flag in ("-S", "--set-param"):
                key = value.split("=", 1)[0]
                if not has_param(key):
                    errors.append(f"dvc {' '.join(args[:2])} -S {key}=…: params.yaml has no key {key}")
    return errors


def bash_syntax_error(line: str) -> str | None:
    res = subprocess.run(["bash", "-n"], input=line, capture_output=True, text=True)
    return None if res.returncode == 0 else res.stderr.strip()


def block_errors(text: str, where: Path) -> list[str]:
    """Every problem in the fenced code blocks of one markdown file."""
    errors = []
    for lang, body, start in blocks(text):
        at = f"{where.name}:{start}"
        if lang in SHELL:
            for offset, line in command_lines(body, lang):
                here = f"{where.name}:{start + 1 + offset}"
                bad = bash_syntax_error(line)
                if bad:
                    errors.append(f"{here}: bash -n: {bad}")
                    continue
                errors += [f"{here}: {e}" for words in simple_commands(line) for e in command_errors(words)]
        elif lang in ("yaml", "yml"):
            try:
                yaml.safe_load(body)
            except yaml.YAMLError as e:
                errors.append(f"{at}: yaml: {e}")
        elif lang in ("python", "py"):
            try:
                compile(body, at, "exec")
            except SyntaxError as e:
                errors.append(f"{at}: python: {e}")
    return errors


# --------------------------------------------------------------------------- the repository's docs


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_every_code_block_is_valid_and_names_what_exists(path):
    assert block_errors(path.read_text(), path) == []


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_every_relative_link_points_to_a_file_of_the_repository(path):
    assert link_errors(path.read_text(), path) == []


def test_the_readme_links_to_every_document_of_docs():
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)", (ROOT / "README.md").read_text()))
    assert {f"docs/{p.name}" for p in DOCS[1:]} <= linked
    assert all(p.read_text().startswith("# ") for p in DOCS[1:])  # a title, then its one-line summary


# --------------------------------------------------------------------------- the checks can fail

README = ROOT / "README.md"


@pytest.mark.parametrize(
    "snippet,message",
    [
        ("```bash\nbash tools/no_such_tool.sh\n```", "no such script"),
        ("```bash\nbash bench/nope.sh --fast\n```", "no such script"),
        ("```sh\nPYTHONPATH=src python3 bench/no_such_bench.py --samples 4\n```", "no such script"),
        ("```bash\n.venv/bin/python -m grmu.no_such_module\n```", "no such module"),
        ("```bash\ngrmu reprot\n```", "not a subcommand"),
        ("```bash\ngrmu report --papr\n```", "not an option"),
        ("```bash\ndvc repro --no-such-flag\n```", "unrecognized arguments"),
        ("```bash\ndvc exp run -S no_such_key=1\n```", "params.yaml has no key no_such_key"),
        ("```bash\nfor m in a b; do dvc exp run -S method=$m\n```", "bash -n"),
        ("```console\n$ grmu nope\nsome output\n```", "not a subcommand"),
        ("```yaml\nmethods: {a: [1, 2}\n```", "yaml"),
        ("```python\ndef f(:\n    pass\n```", "python"),
    ],
)
def test_a_bad_block_is_reported(snippet, message):
    errors = block_errors(f"# t\n\n{snippet}\n", README)
    assert len(errors) == 1 and message in errors[0], errors


def test_good_blocks_pass():
    text = """```bash
CUDA_VISIBLE_DEVICES=0 dvc --wait-for-lock repro --single-item --glob "retrain@erm-*" &
GRMU_TORCHRUN="--nnodes 2" \\
  dvc repro --single-item "retrain@erm-0"
cmd=$(dvc repro --dry --force --single-item "retrain@erm-0" | sed -n 's/^> //p')
git clone <repo> grmu && cd grmu
nice -n 19 bash tools/mutation.sh
grmu recipes celeba --ratios 0.9   # a comment
```
"""
    assert block_errors(text, README) == []


@pytest.mark.parametrize(
    "link,message",
    [
        ("[x](docs/no_such_file.md)", "no such file"),
        ("![x](plots/no_such_plot.png)", "no such file"),
        ("[x](docs/metrics.md#no-such-heading)", "has no heading"),
        ("[x](../../etc/passwd)", "no such file in the repository"),
    ],
)
def test_a_bad_link_is_reported(link, message):
    errors = link_errors(f"# t\n\nSee {link}.\n", README)
    assert len(errors) == 1 and message in errors[0], errors


def test_links_in_code_are_not_links_and_urls_are_not_checked():
    text = "`[x](nope.md)` and <https://dvc.org> [dvc](https://dvc.org)\n```\n[y](nope.md)\n```\n"
    assert link_errors(text, README) == []
