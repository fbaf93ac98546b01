"""Which attributes the index keeps as columns, at which level.

The table below is the one place that says which attributes C-FIND, QIDO-RS,
the JSON API and the dashboard can match quickly (PS3.4 C.6.1.1 and C.6.2.1
keys, PS3.18 Table 10.6.1-5). Any other non-bulk attribute of an instance is
kept in the instance's ``attributes`` JSON, and its distinct values per series
in ``series_values`` (see :mod:`pacsdash.archive.summaries`), and can be
matched too: series, studies and patients as quickly, instances more slowly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword


class Level(enum.Enum):
    """Query/Retrieve level (PS3.4 C.3): the table an entity lives in."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"

    @property
    def table(self) -> str:
        """Name of the index table holding entities of this level."""
        return {"PATIENT": "patients", "STUDY": "studies", "SERIES": "series", "IMAGE": "instances"}[
            self.value
        ]

    @property
    def unique_key(self) -> str:
        """Keyword of this level's unique key (PS3.4 C.2.2.1.1)."""
        return {
            "PATIENT": "PatientID",
            "STUDY": "StudyInstanceUID",
            "SERIES": "SeriesInstanceUID",
            "IMAGE": "SOPInstanceUID",
        }[self.value]


@dataclass(frozen=True)
class Attribute:
    """A DICOM attribute the index keeps as a column."""

    keyword: str
    tag: int
    vr: str
    #: Computed by the index (counts, ModalitiesInStudy), not read from a file.
    derived: bool = False

    @property
    def hex(self) -> str:
        """Tag as 8 upper-case hex digits, as in the DICOM JSON model."""
        return f"{self.tag:08X}"


def _attr(keyword: str, derived: bool = False) -> Attribute:
    tag = tag_for_keyword(keyword)
    if tag is None:  # pragma: no cover - table typo
        raise KeyError(keyword)
    return Attribute(keyword, tag, dictionary_VR(tag), derived)


PATIENT_ATTRIBUTES = tuple(
    _attr(k)
    for k in (
        "PatientID",
        "PatientName",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientSex",
        "OtherPatientIDs",
        "EthnicGroup",
        "PatientComments",
    )
)

STUDY_ATTRIBUTES = tuple(
    _attr(k)
    for k in (
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "InstitutionName",
    )
) + (
    _attr("ModalitiesInStudy", derived=True),
    _attr("SOPClassesInStudy", derived=True),
    _attr("NumberOfStudyRelatedSeries", derived=True),
    _attr("NumberOfStudyRelatedInstances", derived=True),
)

SERIES_ATTRIBUTES = tuple(
    _attr(k)
    for k in (
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesDate",
        "SeriesTime",
        "BodyPartExamined",
        "ProtocolName",
        "Laterality",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "Manufacturer",
        "StationName",
    )
) + (_attr("NumberOfSeriesRelatedInstances", derived=True),)

INSTANCE_ATTRIBUTES = tuple(
    _attr(k)
    for k in (
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
        "ContentDate",
        "ContentTime",
        "AcquisitionDate",
        "AcquisitionTime",
        "ImageType",
        "Rows",
        "Columns",
        "NumberOfFrames",
        "BitsAllocated",
        "PhotometricInterpretation",
        "ImageComments",
    )
)

PATIENT_DERIVED = (
    _attr("NumberOfPatientRelatedStudies", derived=True),
    _attr("NumberOfPatientRelatedSeries", derived=True),
    _attr("NumberOfPatientRelatedInstances", derived=True),
)

#: Columns of each table, in order. Studies repeat the patient's attributes as
#: they were in that study (a Study Root query answers with them), series and
#: instances carry the keys of the levels above them.
TABLE_ATTRIBUTES: dict[Level, tuple[Attribute, ...]] = {
    Level.PATIENT: PATIENT_ATTRIBUTES,
    Level.STUDY: STUDY_ATTRIBUTES + PATIENT_ATTRIBUTES,
    Level.SERIES: SERIES_ATTRIBUTES + (_attr("StudyInstanceUID"),),
    Level.IMAGE: INSTANCE_ATTRIBUTES
    + (_attr("SeriesInstanceUID"), _attr("StudyInstanceUID"), _attr("TransferSyntaxUID")),
}

BY_KEYWORD: dict[str, Attribute] = {}
for _level_attrs in (*TABLE_ATTRIBUTES.values(), PATIENT_DERIVED):
    for _a in _level_attrs:
        BY_KEYWORD.setdefault(_a.keyword, _a)

#: VRs never kept in the instance's attribute JSON: bulk or binary data.
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SQ"})


def attribute_for(name: str) -> Attribute:
    """Resolve a keyword or a tag (``00100010``, ``(0010,0010)``) to an Attribute.

    Raises
    ------
    KeyError
        With a message naming ``name``, if it is neither a known keyword nor a
        well-formed tag.
    """
    if name in BY_KEYWORD:
        return BY_KEYWORD[name]
    tag = tag_for_keyword(name)
    if tag is None:
        cleaned = name.strip().strip("()").replace(",", "")
        if len(cleaned) == 8 and all(c in "0123456789abcdefABCDEF" for c in cleaned):
            tag = int(cleaned, 16)
        else:
            raise KeyError(f"{name!r} is neither a DICOM keyword nor a tag")
    keyword = keyword_for_tag(tag)
    if keyword in BY_KEYWORD:
        return BY_KEYWORD[keyword]
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        vr = "UN"
    return Attribute(keyword or f"{tag:08X}", tag, vr)
