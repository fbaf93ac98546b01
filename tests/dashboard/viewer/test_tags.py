"""The attribute tree: sequences expand, values are escaped, long and binary values cut."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacsdash.dashboard.viewer.tag_browser import TagBrowser
from pacsdash.dashboard.viewer.tags import MAX_VALUE_CHARS, dataset_tree, filter_tree, tree_html
from tests.imaging.samples import load

HOSTILE = "<script>alert(1)</script>^X"

#: Known oddities of the sample corpus, not of the viewer.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning"),
    pytest.mark.filterwarnings("ignore:The pixel data is .* excess padding:UserWarning"),
]


def hostile_dataset() -> Dataset:
    ds = load("CT_small.dcm")
    ds.PatientName = HOSTILE
    ds.StudyDescription = '<img src=x onerror="alert(2)">'
    item = Dataset()
    item.CodeMeaning = "<b>bold</b> & more"
    item.CodeValue = "X1"
    ds.ProcedureCodeSequence = Sequence([item, Dataset()])
    ds.ImageComments = "y" * 5000
    return ds


def test_tag_browser_escapes_patient_name():
    browser = TagBrowser(dataset=hostile_dataset())
    rendered = browser.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;^X" in rendered
    assert "<script>" not in rendered.lower()
    assert "<img" not in rendered and "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in rendered
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in rendered  # inside a sequence item too
    assert browser.pane.object == rendered


def test_sequences_are_expandable_trees():
    nodes = {n.keyword: n for n in dataset_tree(hostile_dataset())}
    sequence = nodes["ProcedureCodeSequence"]
    assert sequence.is_sequence and sequence.value == "2 items"
    first, second = sequence.children
    assert first.keyword == "Item 1" and {c.keyword for c in first.children} == {"CodeMeaning", "CodeValue"}
    assert second.children == ()
    html = tree_html([sequence])
    assert html.count("<details") == 2 and "<summary>" in html and "Item 1" in html


def test_long_and_binary_values_are_cut():
    nodes = {n.keyword: n for n in dataset_tree(hostile_dataset())}
    comment = nodes["ImageComments"].value
    assert len(comment) < MAX_VALUE_CHARS + 40 and comment.endswith("(5000 characters)")
    assert nodes["PixelData"].value == f"[binary, {128 * 128 * 2} bytes]"
    assert nodes["TransferSyntaxUID"].value == "1.2.840.10008.1.2.1"  # file meta comes first


def test_search_keeps_matches_and_their_sequences():
    nodes = dataset_tree(hostile_dataset())
    found = filter_tree(nodes, "codemeaning")
    assert [n.keyword for n in found] == ["ProcedureCodeSequence"]
    assert [c.keyword for c in found[0].children[0].children] == ["CodeMeaning"]
    browser = TagBrowser(dataset=hostile_dataset(), search="patientname")
    assert "PatientName" in browser.html and "StudyDescription" not in browser.html
    browser.search = "no such thing anywhere"
    assert "No attribute matches" in browser.html


def test_every_sample_renders(tmp_path):
    from tests.imaging.samples import VALID

    for path in sorted(VALID.glob("*.dcm")):
        html = tree_html(dataset_tree(pydicom.dcmread(path)))
        assert html.startswith('<div class="pd-tags">') and "<script" not in html.lower()


def test_empty_browser():
    browser = TagBrowser()
    assert "No instance selected" in browser.html
