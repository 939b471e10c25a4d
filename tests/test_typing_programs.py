"""mypy --strict on small programs written as a websockets user would write them.

Each ``tests/typing/*.py`` program is type-checked (never run) against the
package as installed, with ``py.typed``. Expectations live in the programs:
``# N: Revealed type is "..."`` for a ``reveal_type()`` note and ``# E: ...``
for an error (the start of mypy's message), at the end of the line they are
about or on a comment line of their own just above it. A program passes when
mypy reports exactly its expected errors and revealed types; ``assert_type()``
calls make any other inferred type (``Any`` included) an error. Other notes
(such as "defined in") are context and are not compared.

Messages are written as mypy 2 prints them; mypy 1 (the last on Python 3.9)
spells ``builtins.str`` and ``Union[str, bytes]``, and is normalized here.
"""

from __future__ import annotations

import re
import tokenize
from pathlib import Path

import pytest
from mypy import api

PROGRAMS = sorted((Path(__file__).parent / "typing").glob("*.py"))

EXPECTATION = re.compile(r"#\s*([NE]):\s*(.+?)\s*$")
NOT_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
DIAGNOSTIC = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<severity>error|note): (?P<message>.*)$")


def expectations(program: Path) -> list[tuple[int, str, str]]:
    """(line, "N" or "E", text) from the program's ``# N:``/``# E:`` comments."""
    comments: list[tuple[int, str, str]] = []
    code_lines: set[int] = set()
    with tokenize.open(program) as source:
        for token in tokenize.generate_tokens(source.readline):
            if token.type == tokenize.COMMENT:
                match = EXPECTATION.match(token.string)
                if match:
                    comments.append((token.start[0], match[1], match[2]))
            elif token.type not in NOT_CODE:
                code_lines.update(range(token.start[0], token.end[0] + 1))
    found = []
    for line, kind, text in comments:
        if line not in code_lines:  # a comment line of its own: about the next line of code
            following = [number for number in code_lines if number > line]
            assert following, f"{program.name}:{line}: an expectation with no code after it"
            line = min(following)
        found.append((line, kind, text))
    return found


def normalize(message: str) -> str:
    """mypy 1's spelling as mypy 2's, and without mypy 2's "did you mean" suggestions."""
    message = message.replace("builtins.", "")
    message = re.sub(r"Union\[([\w.]+), ([\w.]+)\]", r"\1 | \2", message)
    message = re.sub(r'; did you mean "[^?]*\?', "", message)
    return message


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory) -> dict[str, list[tuple[int, str, str]]]:
    """Run mypy --strict once on every program; its diagnostics by program name."""
    workdir = tmp_path_factory.mktemp("mypy")
    config = workdir / "mypy.ini"
    config.write_text("[mypy]\n")  # not the repository's [tool.mypy] (files=, python_version=)
    stdout, stderr, status = api.run(
        ["--strict", "--config-file", str(config), "--cache-dir", str(workdir / "cache")]
        + ["--show-error-codes", "--no-pretty", "--no-error-summary", "--hide-error-context"]
        + [str(program) for program in PROGRAMS]
    )
    assert status in (0, 1) and not stderr, f"mypy failed to run (status {status}):\n{stderr}{stdout}"
    report: dict[str, list[tuple[int, str, str]]] = {program.name: [] for program in PROGRAMS}
    for line in stdout.splitlines():
        match = DIAGNOSTIC.match(line)
        assert match, f"unexpected mypy output line: {line!r}"
        name = Path(match["path"]).name
        if name not in report and match["severity"] == "note":
            continue  # context in fastws's source (mypy 1: '"unix_serve" defined here')
        assert name in report, f"mypy reported an error outside the programs: {line}"
        report[name].append((int(match["line"]), match["severity"], normalize(match["message"])))
    return report


def test_programs_are_found():
    names = {program.name for program in PROGRAMS}
    assert {"client_api.py", "server_api.py", "reconnect_api.py", "wrong_keywords.py"} <= names


@pytest.mark.parametrize("program", PROGRAMS, ids=[program.stem for program in PROGRAMS])
def test_mypy_strict_reports_exactly_what_the_program_expects(program, mypy_report):
    expected = expectations(program)
    assert expected, f"{program.name} states no expectation: it would check nothing"
    diagnostics = mypy_report[program.name]
    notes = {(line, message) for line, severity, message in diagnostics if severity == "note"}
    errors = [(line, message) for line, severity, message in diagnostics if severity == "error"]
    problems = []
    for line, kind, text in expected:
        if kind == "N" and (line, text) not in notes:
            problems.append(f"line {line}: expected note {text!r}; got {sorted(m for n, m in notes if n == line)}")
        if kind == "E":
            matching = [error for error in errors if error[0] == line and error[1].startswith(text)]
            if not matching:
                problems.append(f"line {line}: expected error {text!r}; got {[m for n, m in errors if n == line]}")
            else:
                errors.remove(matching[0])
    problems += [f"line {line}: unexpected error {message!r}" for line, message in errors]
    revealed = {(line, message) for line, message in notes if message.startswith("Revealed type is")}
    expected_notes = {(line, text) for line, kind, text in expected if kind == "N"}
    problems += [f"line {line}: unexpected {message!r}" for line, message in sorted(revealed - expected_notes)]
    assert not problems, f"{program.name}:\n" + "\n".join(problems)
