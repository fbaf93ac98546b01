"""A series as a volume: slices sorted along their normal, in patient space.

Geometry from the Image Plane Module (PS3.3 C.7.6.2): each slice's
ImagePositionPatient projected on the normal of ImageOrientationPatient
orders the slices; PixelSpacing and the distance between positions give the
spacing; the affine maps voxel indices to patient coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from pacsdash.client.headers import Header


class NotAVolume(ValueError):
    """The slices do not make one volume; the message says why."""


@dataclass
class Volume:
    """A series' voxels and geometry.

    Attributes
    ----------
    array
        ``(z, y, x)`` (``(z, y, x, samples)`` for colour), slices sorted along
        the slice normal, modality values (RescaleSlope/Intercept applied).
    spacing
        ``(z, y, x)`` in mm.
    affine
        4x4 mapping voxel indices ``(x, y, z)`` (column, row, slice) to
        RAS+ world coordinates in mm, as nibabel expects:
        ``nibabel.Nifti1Image(volume.array.transpose(2, 1, 0), volume.affine)``.
    headers
        The slices' pydicom headers, in the order of ``array`` (from a
        server, each is built from its metadata when first read).
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    headers: Sequence[Dataset]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape


def _float_list(ds: Header, keyword: str, count: int) -> np.ndarray | None:
    value = ds.get(keyword)
    if value is None or len(value) != count:
        return None
    return np.array([float(v) for v in value], dtype=float)


def stack(headers: Sequence[Header], pixels: Sequence[np.ndarray], rescale: bool = True) -> Volume:
    """A :class:`Volume` from single-frame slices and their stored pixel values.

    Raises
    ------
    NotAVolume
        For fewer than two slices, slices without geometry, or slices of
        different orientations or sizes.
    """
    if len(headers) < 2:
        raise NotAVolume("a volume needs at least two slices")
    orientation = _float_list(headers[0], "ImageOrientationPatient", 6)
    if orientation is None:
        raise NotAVolume("the slices have no ImageOrientationPatient")
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    positions = []
    for ds in headers:
        other = _float_list(ds, "ImageOrientationPatient", 6)
        if other is None or not np.allclose(other, orientation, atol=1e-4):
            raise NotAVolume("the slices have different orientations")
        position = _float_list(ds, "ImagePositionPatient", 3)
        if position is None:
            raise NotAVolume("a slice has no ImagePositionPatient")
        positions.append(position)
    if len({p.shape for p in pixels}) != 1:
        raise NotAVolume("the slices have different sizes")
    order = np.argsort([float(np.dot(p, normal)) for p in positions], kind="stable")
    distances = np.array([float(np.dot(positions[i], normal)) for i in order])
    steps = np.diff(distances)
    if np.any(np.abs(steps) < 1e-6):
        raise NotAVolume("two slices share one position")
    dz = float(np.median(steps))
    spacing_yx = _float_list(headers[0], "PixelSpacing", 2)
    dy, dx = (float(spacing_yx[0]), float(spacing_yx[1])) if spacing_yx is not None else (1.0, 1.0)
    array = _stacked([pixels[i] for i in order], [headers[i] for i in order], rescale)
    first = positions[order[0]]
    lps = np.eye(4)
    lps[:3, 0] = row_dir * dx  # along a row: the column index x
    lps[:3, 1] = col_dir * dy  # down a column: the row index y
    lps[:3, 2] = normal * dz
    lps[:3, 3] = first
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM's LPS to NIfTI's RAS
    return Volume(array, (dz, dy, dx), affine, [headers[i] for i in order])


def _stacked(pixels: Sequence[np.ndarray], headers: Sequence[Header], rescale: bool) -> np.ndarray:
    """The slices stacked; when ``rescale``, as float32 modality values
    ``stored * RescaleSlope + RescaleIntercept`` (PS3.3 C.11.1.1.2), computed
    in float32 straight into the volume, as ``pixel_array.astype(float32) *
    float32(slope) + float32(intercept)`` would give them."""
    if not rescale:
        return np.stack(pixels)
    array = np.empty((len(pixels), *pixels[0].shape), dtype=np.float32)
    for out, values, ds in zip(array, pixels, headers):
        slope = np.float32(float(ds.get("RescaleSlope", 1) or 1))
        intercept = np.float32(float(ds.get("RescaleIntercept", 0) or 0))
        if slope == 1:  # x * 1 is x in float32: one pass less
            np.add(values, intercept, out=out, dtype=np.float32)
        else:
            np.multiply(values, slope, out=out, dtype=np.float32)
            out += intercept
    return array
