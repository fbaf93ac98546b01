"""A data set as a tree of attributes, and its escaped HTML (no Panel here).

Every value shown comes from a file someone sent: names, descriptions and
comments are user input. :func:`tree_html` escapes every piece of text it
writes; nothing from a data set ever reaches the page as markup. Long values
are cut, binary ones summarised.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

#: VRs whose values are binary: shown as a size, never as text.
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW", "US or SS or OW"})
#: Characters of a value shown before it is cut.
MAX_VALUE_CHARS = 200
#: Sequence items shown before "… more items".
MAX_ITEMS = 50
#: Nesting depth shown.
MAX_DEPTH = 8
#: Elements shown in total, so that a huge enhanced multi-frame header stays responsive.
MAX_NODES = 5000


@dataclass(frozen=True)
class TagNode:
    """One attribute (or one sequence item) of a data set.

    Attributes
    ----------
    tag : str
        ``"(0010,0010)"``; ``""`` for a sequence item.
    keyword : str
        ``"PatientName"``, ``"Item 1"`` for an item, ``""`` for private/unknown tags.
    name : str
        The dictionary name (``"Patient's Name"``, ``"Private tag data"``).
    VR : str
    value : str
        Display text, raw (not escaped), already cut to length.
    children : tuple of TagNode
        Items of a sequence, elements of an item.
    """

    tag: str
    keyword: str
    name: str
    VR: str
    value: str
    children: tuple[TagNode, ...] = ()

    @property
    def is_sequence(self) -> bool:
        """Whether the node can be expanded."""
        return bool(self.children) or self.VR == "SQ"

    def matches(self, text: str) -> bool:
        """Whether `text` (lower case) is in the tag, keyword, name or value."""
        return any(text in part.lower() for part in (self.tag, self.keyword, self.name, self.value))


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def _printable(text: str) -> str:
    """Replace control characters (but not tab) that would garble a line."""
    return "".join(ch if ch >= " " or ch == "\t" else "\N{REPLACEMENT CHARACTER}" for ch in text)


def value_text(element: DataElement, limit: int = MAX_VALUE_CHARS) -> str:
    """Display text of a non-sequence element.

    Parameters
    ----------
    element : pydicom.dataelem.DataElement
    limit : int, optional
        Characters kept; longer text is cut and its length noted.

    Returns
    -------
    str
        Multiple values joined with a backslash; binary VRs as
        ``"[binary, N bytes]"``; raw, not escaped.
    """
    value = element.value
    if element.VR in BINARY_VRS or isinstance(value, bytes | bytearray | memoryview):
        size = len(value) if value is not None else 0
        return f"[binary, {size} bytes]"
    if value is None or value == "":
        return ""
    if isinstance(value, MultiValue | list | tuple):
        items = list(value)
        text = "\\".join(str(v) for v in items[:256])
        if len(items) > 256:
            text += f"\\… ({len(items)} values)"
    else:
        text = str(value)
    return _cut(_printable(text), limit)


class _Budget:
    def __init__(self, nodes: int) -> None:
        self.left = nodes
        self.cut = False


def _element_node(element: DataElement, depth: int, budget: _Budget, limit: int, max_items: int) -> TagNode:
    tag = f"({element.tag.group:04X},{element.tag.element:04X})"
    keyword = element.keyword or ""
    name = element.name or ""
    if element.VR != "SQ":
        try:
            text = value_text(element, limit)
        except Exception as exc:  # a value pydicom cannot convert
            text = f"[unreadable value: {type(exc).__name__}]"
        return TagNode(tag, keyword, name, element.VR, text)
    items = list(element.value or [])
    children: list[TagNode] = []
    if depth >= MAX_DEPTH:
        return TagNode(tag, keyword, name, "SQ", f"{len(items)} items (nested too deep to show)")
    for number, item in enumerate(items[:max_items], start=1):
        if budget.left <= 0:
            budget.cut = True
            break
        elements = tuple(dataset_nodes(item, depth=depth + 1, budget=budget, limit=limit, max_items=max_items))
        children.append(TagNode("", f"Item {number}", "", "", f"{len(item)} elements", elements))
    if len(items) > max_items:
        children.append(TagNode("", "", "", "", f"… {len(items) - max_items} more items"))
    return TagNode(tag, keyword, name, "SQ", f"{len(items)} item{'s' if len(items) != 1 else ''}", tuple(children))


def dataset_nodes(
    ds: Dataset,
    *,
    depth: int = 0,
    budget: _Budget | None = None,
    limit: int = MAX_VALUE_CHARS,
    max_items: int = MAX_ITEMS,
) -> list[TagNode]:
    """The elements of `ds` (not its file meta) as :class:`TagNode` trees, in tag order."""
    budget = budget or _Budget(MAX_NODES)
    nodes = []
    for tag in list(ds.keys()):
        if budget.left <= 0:
            budget.cut = True
            break
        budget.left -= 1
        try:
            element = ds[tag]
        except Exception as exc:  # undecodable raw element
            t = Tag(tag)
            nodes.append(TagNode(f"({t.group:04X},{t.element:04X})", "", "", "", f"[unreadable: {type(exc).__name__}]"))
            continue
        nodes.append(_element_node(element, depth, budget, limit, max_items))
    return nodes


def dataset_tree(ds: Dataset, *, limit: int = MAX_VALUE_CHARS, max_items: int = MAX_ITEMS) -> list[TagNode]:
    """File meta (group 0002) then the data set, as trees.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance.
    limit : int, optional
        Characters of a value kept.
    max_items : int, optional
        Items of a sequence shown.

    Returns
    -------
    list of TagNode
        At most :data:`MAX_NODES` elements; a last node says when more were left out.
    """
    budget = _Budget(MAX_NODES)
    nodes: list[TagNode] = []
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        nodes += dataset_nodes(meta, budget=budget, limit=limit, max_items=max_items)
    nodes += dataset_nodes(ds, budget=budget, limit=limit, max_items=max_items)
    if budget.cut:
        nodes.append(TagNode("", "", "", "", f"… more elements not shown (over {MAX_NODES})"))
    return nodes


def filter_tree(nodes: Iterable[TagNode], text: str) -> list[TagNode]:
    """Keep nodes matching `text` (case-insensitive), and sequences with a matching descendant."""
    wanted = text.strip().lower()
    if not wanted:
        return list(nodes)
    kept = []
    for node in nodes:
        if node.matches(wanted):
            kept.append(node)
            continue
        children = filter_tree(node.children, wanted)
        if children:
            kept.append(TagNode(node.tag, node.keyword, node.name, node.VR, node.value, tuple(children)))
    return kept


def _row(node: TagNode) -> str:
    e = html.escape
    label = node.keyword or node.name or ("Private" if node.tag else "")
    title = f' title="{e(node.name)}"' if node.name and node.name != node.keyword else ""
    return (
        f'<span class="pd-tag">{e(node.tag)}</span>'
        f'<span class="pd-kw"{title}>{e(label)}</span>'
        f'<span class="pd-vr">{e(node.VR)}</span>'
        f'<span class="pd-val">{e(node.value)}</span>'
    )


def _node_html(node: TagNode, open_: bool, out: list[str]) -> None:
    if node.children:
        out.append(f'<details{" open" if open_ else ""}><summary>{_row(node)}</summary><div class="pd-kids">')
        for child in node.children:
            _node_html(child, open_, out)
        out.append("</div></details>")
    else:
        out.append(f'<div class="pd-row">{_row(node)}</div>')


def tree_html(nodes: Iterable[TagNode], *, expanded: bool = False) -> str:
    """Render nodes as nested ``<details>`` (native, no script), every text escaped.

    Parameters
    ----------
    nodes : iterable of TagNode
    expanded : bool, optional
        Open every sequence (used for search results).

    Returns
    -------
    str
        HTML; values pass through :func:`html.escape`, so ``<script>`` in a
        Patient's Name arrives as ``&lt;script&gt;``.
    """
    out = ['<div class="pd-tags">']
    for node in nodes:
        _node_html(node, expanded, out)
    out.append("</div>")
    return "".join(out)


TAGS_CSS = """
.pd-tags { font: 12px/1.5 ui-monospace, SFMono-Regular, Menlo, monospace; }
.pd-row, .pd-tags summary { display: grid; grid-template-columns: 7.5em minmax(6em, 16em) 2.5em minmax(12em, 1fr);
  gap: 0 0.6em; align-items: start; padding: 0 2px; }
.pd-tags summary { cursor: pointer; list-style: none; }
.pd-tags summary::before { content: "▸"; position: absolute; margin-left: -1em; }
.pd-tags details[open] > summary::before { content: "▾"; }
.pd-tags details, .pd-row { position: relative; margin-left: 1em; }
.pd-row:hover, .pd-tags summary:hover { background: rgba(128,128,128,0.12); }
.pd-kids { border-left: 1px dotted #999; margin-left: 0.3em; }
.pd-tag { color: #777; } .pd-vr { color: #2a7ab0; } .pd-kw { overflow: hidden; text-overflow: ellipsis; }
.pd-val { white-space: pre-wrap; word-break: break-all; }
"""
