"""mkdocs hooks for the fastws docs (mkdocs.yml: ``hooks: [docs/hooks.py]``).

- ``<!-- fastws:exports MODULE -->`` on a package page becomes a table of the
  package's ``__all__``, each name linked (an autorefs cross-reference, checked
  in strict mode) to the module page that renders it (see check_api.home).
- Relative links that leave docs/ (``../examples/chat.py``, ``../bench/...``)
  work on GitHub; on the site they become links into ``repo_url`` when set, and
  plain code otherwise. A target that does not exist is a warning (an error
  with ``strict``).
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import check_api  # noqa: E402

log = logging.getLogger("mkdocs.plugins.fastws")
_report = None


def _exports() -> dict:
    global _report
    if _report is None:
        _report = check_api.check()
    return _report.exports


def _summary(module: str, name: str) -> str:
    obj = getattr(importlib.import_module(module), name)
    doc = check_api.docstring(module, name, obj) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ").strip()
    return first.replace("|", "\\|")


def _table(package: str) -> str:
    rows = ["| name | documented in | summary |", "|---|---|---|"]
    for name, where in _exports().get(package, []):
        rows.append(f"| [`{name}`][{where}.{name}] | [`{where}`]({where}.md) | {_summary(where, name)} |")
    return "\n".join(rows) + "\n"


_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>\.\./[^)#\s]+)(?P<anchor>#[^)\s]*)?\)")


def on_page_markdown(markdown, page, config, files):
    markdown = re.sub(r"<!-- fastws:exports (\S+) -->", lambda m: _table(m.group(1)), markdown)
    docs_dir = Path(config["docs_dir"]).resolve()
    root = docs_dir.parent
    page_dir = (docs_dir / page.file.src_path).parent

    def outside(match):
        target = (page_dir / match.group("target")).resolve()
        try:
            relative = target.relative_to(root)
        except ValueError:
            log.warning("%s: link %s leaves the repository", page.file.src_path, match.group("target"))
            return match.group(0)
        if docs_dir in target.parents or target == docs_dir:
            return match.group(0)  # mkdocs checks links inside docs/
        if not target.exists():
            log.warning("%s: link target %s does not exist", page.file.src_path, relative)
            return match.group(0)
        repo_url = config.get("repo_url")
        if repo_url:
            kind = "tree" if target.is_dir() else "blob"
            return f"[{match.group('text')}]({repo_url.rstrip('/')}/{kind}/main/{relative.as_posix()})"
        return match.group("text") if match.group("text").startswith("`") else f"`{match.group('text')}`"

    return _LINK.sub(outside, markdown)
