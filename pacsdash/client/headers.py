"""Slice headers from WADO-RS metadata (DICOM JSON, PS3.18 F.2), made cheaply.

A volume needs a dozen attributes of each slice (PS3.3 C.7.6.2 Image Plane,
C.7.6.3 Image Pixel, C.11.1 Modality LUT); building every attribute of a
hundred slices with ``Dataset.from_json`` costs more than fetching their
pixels (about 1 ms a slice, 0.2 ms even for those twelve). :class:`SliceHeader`
reads just those straight from the JSON, and :class:`LazyHeaders` builds each
full pydicom header the first time it is asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

from pydicom.dataset import Dataset

#: What a volume reads of each slice: DICOM JSON key (tag) -> keyword.
GEOMETRY = {
    "00080018": "SOPInstanceUID",
    "00200032": "ImagePositionPatient",
    "00200037": "ImageOrientationPatient",
    "00280002": "SamplesPerPixel",
    "00280004": "PhotometricInterpretation",
    "00280006": "PlanarConfiguration",
    "00280010": "Rows",
    "00280011": "Columns",
    "00280030": "PixelSpacing",
    "00280100": "BitsAllocated",
    "00280103": "PixelRepresentation",
    "00281052": "RescaleIntercept",
    "00281053": "RescaleSlope",
}
#: Those of them with more than one value (PS3.3 C.7.6.2.1, C.7.6.3).
MULTIPLE = {"ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"}


def full_header(item: dict) -> Dataset:
    """Every attribute of one instance's DICOM JSON as a pydicom Dataset; bulk data is not fetched, its
    values are left empty (``b""``).

    Built without a ``bulk_data_uri_handler`` (pydicom inspects a handler's
    signature for every element, a third of its time): the BulkDataURIs are
    taken out first, their elements emptied afterwards.
    """
    ds = Dataset.from_json(_without_bulk_data(item))
    _empty_bulk_data(ds, item)
    return ds


def _without_bulk_data(item: dict) -> dict:
    """``item`` with each BulkDataURI element (in sequences too, PS3.18 F.2.6) left with its VR alone;
    ``item`` itself when it has none."""
    changed: dict[str, Any] = {}
    for tag, element in item.items():
        if not isinstance(element, dict):
            continue
        if "BulkDataURI" in element:
            changed[tag] = {"vr": element.get("vr")}
        elif element.get("vr") == "SQ" and element.get("Value"):
            items = [_without_bulk_data(i) if isinstance(i, dict) else i for i in element["Value"]]
            if any(new is not old for new, old in zip(items, element["Value"])):
                changed[tag] = {**element, "Value": items}
    return {**item, **changed} if changed else item


def _empty_bulk_data(ds: Dataset, item: dict) -> None:
    """Set ``b""`` where ``item`` (DICOM JSON of ``ds``) gives a BulkDataURI, in sequences too."""
    for tag, element in item.items():
        if not isinstance(element, dict):
            continue
        if "BulkDataURI" in element:
            ds[int(tag, 16)].value = b""
        elif element.get("vr") == "SQ" and element.get("Value"):
            for child, child_item in zip(ds[int(tag, 16)].value, element["Value"]):
                if isinstance(child_item, dict):
                    _empty_bulk_data(child, child_item)


class SliceHeader(Mapping[str, Any]):
    """The attributes of :data:`GEOMETRY` of one instance, read from its DICOM JSON (PS3.18 F.2).

    Read as a pydicom Dataset is, by keyword: ``header.get("RescaleSlope", 1)``,
    ``header.Rows``; numbers as JSON gives them (DS may be a number or a
    string), one value as itself, several as a list. Absent or empty
    attributes are not in it.
    """

    def __init__(self, item: dict) -> None:
        values: dict[str, Any] = {}
        for tag, keyword in GEOMETRY.items():
            value = (item.get(tag) or {}).get("Value")
            if value:
                values[keyword] = list(value) if keyword in MULTIPLE else value[0]
        self._values = values

    def __getitem__(self, keyword: str) -> Any:
        return self._values[keyword]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, keyword: str) -> Any:
        try:
            return self.__dict__["_values"][keyword]
        except KeyError:
            raise AttributeError(f"the slice's metadata has no {keyword}") from None

    def __repr__(self) -> str:
        return f"SliceHeader({self._values!r})"


#: A slice's header as a volume reads it: a pydicom Dataset, or what it needs of one.
Header = Dataset | SliceHeader


def geometry_header(item: dict) -> SliceHeader:
    """What a volume reads of one instance's DICOM JSON (:data:`GEOMETRY`)."""
    return SliceHeader(item)


def has_pixels(item: dict) -> bool:
    """Whether an instance's DICOM JSON describes an image (has Rows, PS3.3 C.7.6.3)."""
    return bool((item.get("00280010") or {}).get("Value"))


def sop_instance_uid(item: dict) -> str | None:
    """The SOPInstanceUID of an instance's DICOM JSON, if it has one."""
    value = (item.get("00080018") or {}).get("Value") or [None]
    return None if value[0] is None else str(value[0])


class LazyHeaders(Sequence[Dataset]):
    """Pydicom headers of instances, each built from its DICOM JSON the first time it is read."""

    def __init__(self, items: Sequence[dict]) -> None:
        self._items = list(items)
        self._made: list[Dataset | None] = [None] * len(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Dataset: ...

    @overload
    def __getitem__(self, index: slice) -> list[Dataset]: ...

    def __getitem__(self, index: int | slice) -> Dataset | list[Dataset]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        made = self._made[index]
        if made is None:
            made = self._made[index] = full_header(self._items[index])
        return made

    def __iter__(self) -> Iterator[Dataset]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        built = sum(made is not None for made in self._made)
        return f"<{len(self)} pydicom headers, {built} built so far>"
