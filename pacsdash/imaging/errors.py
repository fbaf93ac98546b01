"""Exceptions raised by :mod:`pacsdash.imaging`.

Every exception derives from :class:`ImagingError` and carries an
``http_status`` hint so that a DICOMweb door can answer with the status the
standard asks for (PS3.18 8.7.3 and 10.4.1.3 for retrieve; 404 when the
target resource has no pixel data or no such frame, 406 when the requested
representation cannot be produced) instead of a 500.
"""

from __future__ import annotations


class ImagingError(Exception):
    """Base class of every error raised by :mod:`pacsdash.imaging`.

    Attributes
    ----------
    http_status : int
        The HTTP status a DICOMweb server should answer with (PS3.18 8.7.3).
    """

    http_status: int = 500


class NoPixelData(ImagingError):
    """The instance has no (7FE0,0010) *Pixel Data* (or float variant).

    SR, RT Plan, waveform and other non-image instances end up here
    (PS3.18 10.4.1.1.3: rendering a resource that is not an image is a 404).
    """

    http_status = 404


class FrameOutOfRange(ImagingError, IndexError):
    """The requested frame does not exist (PS3.18 8.7.3.5.1: 404)."""

    http_status = 404


class UnsupportedEncoding(ImagingError):
    """The pixel data cannot be decoded here.

    Raised for a transfer syntax that pydicom does not support or whose
    codec plugin is not installed, and for a (0028,0004) *Photometric
    Interpretation* the renderer cannot display.
    """

    http_status = 406


class OverBudget(ImagingError):
    """One frame would decode to more samples than the pixel budget allows
    (:data:`~pacsdash.imaging.decoding.MAX_FRAME_SAMPLES`): a few hundred KB
    of JPEG can declare 8192 x 8192, and decoding it would take gigabytes.
    The stored bytes are still retrievable as they are; a rendering of them
    cannot be produced here (406, as for any representation that cannot be).
    """

    http_status = 406


class UnsupportedMediaType(ImagingError):
    """The requested rendered media type cannot be produced (PS3.18 8.3.5.1.1)."""

    http_status = 406


class InvalidParameter(ImagingError, ValueError):
    """A rendering parameter (window, viewport, quality) is malformed (PS3.18 8.3.5.1)."""

    http_status = 400


class CorruptPixelData(ImagingError):
    """The pixel data is present but cannot be decoded or sliced.

    Examples: (7FE0,0010) shorter than (0028,0010) *Rows* x (0028,0011)
    *Columns* x frames requires, a damaged compressed bitstream, missing
    Image Pixel Module attributes (PS3.3 C.7.6.3).
    """

    http_status = 500
