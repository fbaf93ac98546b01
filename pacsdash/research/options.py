"""The options of the Application Level Confidentiality Profile (PS3.15 E.3).

Named as the columns of Table E.1-1, each with its code of CID 7050 (taken
from pydicom's copy of PS3.16, not typed here).
"""

from __future__ import annotations

import enum
import re

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code


class Option(enum.Enum):
    """A column of PS3.15 Table E.1-1 beside the Basic Profile."""

    RETAIN_SAFE_PRIVATE = "Retain Safe Private"
    RETAIN_UIDS = "Retain UIDs"
    RETAIN_DEVICE_IDENTITY = "Retain Device Identity"
    RETAIN_INSTITUTION_IDENTITY = "Retain Institution Identity"
    RETAIN_PATIENT_CHARACTERISTICS = "Retain Patient Characteristics"
    RETAIN_FULL_DATES = "Retain Longitudinal Temporal Information with Full Dates"
    RETAIN_MODIFIED_DATES = "Retain Longitudinal Temporal Information with Modified Dates"
    CLEAN_DESCRIPTORS = "Clean Descriptors"
    CLEAN_STRUCTURED_CONTENT = "Clean Structured Content"
    CLEAN_GRAPHICS = "Clean Graphics"

    @property
    def code(self) -> Code:
        """Its code in CID 7050 (De-identification Method)."""
        return getattr(codes.DCM, _CODE_KEYWORDS[self])

    @property
    def slug(self) -> str:
        """``retain-patient-characteristics``: the form taken on command lines and in JSON."""
        return re.sub(r"[^a-z0-9]+", "-", self.value.lower()).strip("-")

    @classmethod
    def parse(cls, text: str) -> Option:
        """An option from its column name or slug, in any case.

        Raises
        ------
        ValueError
            Naming the options there are.
        """
        wanted = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
        for option in cls:
            if wanted in (option.slug, option.slug.replace("longitudinal-temporal-information-with-", "")):
                return option
        names = ", ".join(o.slug for o in cls)
        raise ValueError(f"no de-identification option {str(text)[:80]!r}; the options are: {names}")


_CODE_KEYWORDS = {
    Option.RETAIN_SAFE_PRIVATE: "RetainSafePrivateOption",
    Option.RETAIN_UIDS: "RetainUidsOption",
    Option.RETAIN_DEVICE_IDENTITY: "RetainDeviceIdentityOption",
    Option.RETAIN_INSTITUTION_IDENTITY: "RetainInstitutionIdentityOption",
    Option.RETAIN_PATIENT_CHARACTERISTICS: "RetainPatientCharacteristicsOption",
    Option.RETAIN_FULL_DATES: "RetainLongitudinalTemporalInformationFullDatesOption",
    Option.RETAIN_MODIFIED_DATES: "RetainLongitudinalTemporalInformationModifiedDatesOption",
    Option.CLEAN_DESCRIPTORS: "CleanDescriptorsOption",
    Option.CLEAN_STRUCTURED_CONTENT: "CleanStructuredContentOption",
    Option.CLEAN_GRAPHICS: "CleanGraphicsOption",
}
#: What this research PACS does unless told otherwise: dates kept, shifted.
DEFAULT_OPTIONS = frozenset({Option.RETAIN_MODIFIED_DATES})
BASIC_PROFILE_CODE = codes.DCM.BasicApplicationConfidentialityProfile
