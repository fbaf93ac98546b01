"""The current instance's attributes as an expandable, searchable tree."""

from __future__ import annotations

from typing import Any

import panel as pn
import param
from pydicom.dataset import Dataset

from pacsdash.dashboard.viewer.tags import TAGS_CSS, dataset_tree, filter_tree, tree_html


class TagBrowser(pn.viewable.Viewer):
    """A data set's attributes as a tree; sequences expand, values are escaped.

    Parameters
    ----------
    dataset : pydicom.dataset.Dataset or None
        The instance to show (its file meta first).
    search : str
        Show only attributes whose tag, keyword, name or value contains it.
    """

    dataset = param.ClassSelector(class_=Dataset, default=None, allow_None=True)
    search = param.String(default="", doc="Filter by tag, keyword, name or value.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._nodes: list = []
        self._search = pn.widgets.TextInput.from_param(
            self.param.search, placeholder="Search tag, keyword or value", label="", sizing_mode="stretch_width"
        )
        self.pane = pn.pane.HTML("", stylesheets=[TAGS_CSS], sizing_mode="stretch_width",
                                 styles={"overflow-y": "auto"}, max_height=600)
        self._layout = pn.Column(self._search, self.pane, sizing_mode="stretch_width")
        self._rebuild()

    @property
    def html(self) -> str:
        """The HTML currently shown (every value escaped)."""
        return str(self.pane.object or "")

    @param.depends("dataset", watch=True)
    def _rebuild(self) -> None:
        self._nodes = dataset_tree(self.dataset) if self.dataset is not None else []
        self._render()

    @param.depends("search", watch=True)
    def _render(self) -> None:
        if self.dataset is None:
            self.pane.object = '<p class="pd-empty">No instance selected.</p>'
            return
        nodes = filter_tree(self._nodes, self.search)
        if not nodes:
            self.pane.object = '<p class="pd-empty">No attribute matches.</p>'
            return
        self.pane.object = tree_html(nodes, expanded=bool(self.search.strip()))

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout
