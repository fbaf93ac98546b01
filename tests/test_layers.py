"""The doors read stored bytes from the archive, never from paths (issue 16).

``web/``, ``dimse/``, ``dashboard/`` and ``research/`` read an instance
through :meth:`Archive.open`, :meth:`Archive.read_dataset`,
:meth:`Archive.read_range` and :meth:`Archive.verify`: the store may be an
object store, with no file to open. These checks read the modules' syntax
trees: a door that asks for a stored file's path, reaches into the
archive's store, or opens a file the list below does not name fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOORS = ("pacsdash/web", "pacsdash/dimse", "pacsdash/dashboard", "pacsdash/research")
PATH_METHODS = {"local_path", "verified_path"}

#: (module, method): a path asked for on purpose, and why.
PATH_ALLOWED = {
    # A large study is de-identified in worker processes: a local store's file is named to the worker
    # rather than piped to it; any other store (no local path: AttributeError/NotImplementedError) sends bytes.
    ("pacsdash/research/anonymize.py", "verified_path"),
}

#: module -> how many builtin open() calls it makes, and of what (none of them a stored file).
OPEN_ALLOWED = {
    "pacsdash/web/research.py": 1,  # an export's ZIP, written under the home's exports
    "pacsdash/dimse/files.py": 1,  # even_length_copy: a file on disk given to `pacsdash send`
    "pacsdash/dashboard/admin_log.py": 1,  # the server's log file
    "pacsdash/research/export.py": 6,  # the export's own manifest, checksums and partial files
    "pacsdash/research/workers.py": 1,  # the path anonymize names (see PATH_ALLOWED)
}


def door_modules() -> list[Path]:
    return sorted(p for folder in DOORS for p in (ROOT / folder).rglob("*.py"))


def _name(node: ast.AST) -> str:
    """``archive``, ``self.archive``, ``self.app.archive``... as text (empty for anything else)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _name(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def _problems(path: Path, module: str = "") -> tuple[list[str], int]:
    module = module or str(path.relative_to(ROOT))
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=module)
    problems, opens = [], 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr in PATH_METHODS and (module, node.attr) not in PATH_ALLOWED:
                problems.append(f"{module}:{node.lineno}: .{node.attr} (read through Archive.open/read_dataset/"
                                "read_range instead)")
            if node.attr == "store" and _name(node.value).split(".")[-1].endswith("archive"):
                problems.append(f"{module}:{node.lineno}: {_name(node)} (the archive's store is its own)")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            opens += 1
    return problems, opens


@pytest.mark.parametrize("path", door_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_doors_read_stored_bytes_from_the_archive_never_paths(path):
    problems, opens = _problems(path)
    assert not problems, "\n".join(problems)
    module = str(path.relative_to(ROOT))
    assert opens == OPEN_ALLOWED.get(module, 0), (
        f"{module} calls open() {opens} time(s), {OPEN_ALLOWED.get(module, 0)} expected: a stored file is read "
        "through the archive (Archive.open, read_dataset, read_range); another file goes in OPEN_ALLOWED with why")


def test_the_checks_find_what_they_look_for(tmp_path):
    """The checks themselves: a door asking for a path, reaching into the store, or opening a file is caught."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f(archive, location):\n"
                      "    archive.local_path(location)\n"
                      "    self.app.archive.store.read('k')\n"
                      "    return open('x', 'rb')\n", encoding="utf-8")
    problems, opens = _problems(sample, "pacsdash/web/sample.py")
    assert len(problems) == 2 and opens == 1
