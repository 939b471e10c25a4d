#!/usr/bin/env bash
# The documentation site (mkdocs + mkdocstrings): install the docs tools into the
# active environment (fastws itself must be importable: .ci/run's venv), check
# that every public name is in the API reference with a docstring, build the
# site with --strict (every warning is an error: broken links between pages,
# missing anchors, unresolved cross-references, links out of docs/ to files
# that do not exist), then check that the built site rendered every name.
# The site goes to a temporary directory (or $1) and is removed afterwards
# unless $1 is given.
set -euo pipefail
cd "$(dirname "$0")/.."

# The docs extra, until pyproject.toml has one.
python -m pip install -q "mkdocs>=1.6,<2" "mkdocstrings[python]>=0.26" "mkdocs-material>=9.5" "mkdocs-autorefs>=1.2"

started=$SECONDS
if [ $# -ge 1 ]; then
    site="$1"
else
    site="$(mktemp -d)"
    trap 'rm -rf "$site"' EXIT
fi
python docs/check_api.py
NO_MKDOCS_2_WARNING=1 python -m mkdocs build --strict --clean --site-dir "$site"
python docs/check_api.py --site "$site"
echo "docs: built and checked in $((SECONDS - started)) s ($site)"
