"""The documentation: every public name in the API reference with a docstring
(docs/check_api.py, without building the site), the README's links and two
commands, and the link rewriting of docs/hooks.py. The site itself is built with
warnings as errors by .ci/docs.sh (mkdocs is not a test dependency)."""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def load(name: str) -> types.ModuleType:
    sys.path.insert(0, str(DOCS))
    try:
        spec = importlib.util.spec_from_file_location(f"fastws_docs_{name}", DOCS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(DOCS))


@pytest.fixture(scope="module")
def check_api():
    return load("check_api")


def test_every_public_name_is_in_the_reference_with_a_docstring(check_api):
    report = check_api.check()
    assert not report.errors, "docs/check_api.py:\n" + "\n".join(report.errors)
    assert "fastws.asyncio.server.serve" in report.identifiers
    assert ("serve", "fastws.asyncio.server") in report.exports["fastws"]


def test_a_name_without_docstring_is_reported(check_api, monkeypatch):
    read = check_api.attribute_docstring

    def without_op_cont(module: str, name: str, *rest):
        return None if name == "OP_CONT" else read(module, name, *rest)

    monkeypatch.setattr(check_api, "attribute_docstring", without_op_cont)
    assert "fastws.frames.OP_CONT: no docstring" in check_api.check().errors


def test_attribute_docstrings_are_read(check_api):
    assert check_api.attribute_docstring("fastws.frames", "MAX_FRAME_SIZE")  # assigned in _rules, re-exported
    assert check_api.attribute_docstring("fastws.frames", "OP_CONT").startswith("Continuation frame")
    assert check_api.attribute_docstring("fastws.frames", "OPCODES") is None


LINK = re.compile(r"(?<!!)\[[^\]]+\]\((?P<target>[^)#\s]+)(?P<anchor>#[^)\s]*)?\)")


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return [m.group("target") for m in LINK.finditer(text) if "://" not in m.group("target")]


@pytest.mark.parametrize("path", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_resolve(path):
    """On GitHub too: README -> docs/*.md, docs/*.md -> ../examples, ../bench..."""
    missing = [target for target in relative_links(path) if not (path.parent / target).exists()]
    assert not missing, f"{path.name}: broken links {missing}"


def test_readme_keeps_the_two_commands_and_links_the_guides():
    text = README.read_text(encoding="utf-8")
    assert "python3 -m venv .venv && . .venv/bin/activate && pip install . && fastws serve" in text
    test_command = (
        "python3 -m venv .venv && . .venv/bin/activate && tests/interop/install-peers.sh"
        ' && pip install ".[test]" && python -m pytest'
    )
    assert test_command in text
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")  # CI runs exactly that
    linked = set(relative_links(README))
    guides = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert {f"docs/{name}" for name in guides} <= linked


def test_every_guide_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in [*DOCS.glob("*.md"), *(DOCS / "reference").glob("*.md")]:
        assert page.relative_to(DOCS).as_posix() in nav, page


def test_hook_checks_links_that_leave_docs(caplog):
    hooks = load("hooks")
    page = types.SimpleNamespace(file=types.SimpleNamespace(src_path="guide.md"))
    config = {"docs_dir": str(DOCS), "repo_url": None}
    markdown = "[chat](../examples/chat.py), [gone](../examples/gone.py), [codec](codec.md)"
    with caplog.at_level(logging.WARNING, logger="mkdocs.plugins.fastws"):
        out = hooks.on_page_markdown(markdown, page, config, None)
    assert out.startswith("`chat`, [gone](../examples/gone.py), [codec](codec.md)")
    assert "examples/gone.py does not exist" in caplog.text
    config["repo_url"] = "https://github.com/o/fastws"
    assert hooks.on_page_markdown("[x](../bench/results/)", page, config, None) == (
        "[x](https://github.com/o/fastws/tree/main/bench/results)"
    )
