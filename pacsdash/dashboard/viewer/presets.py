"""Window presets: the usual CT windows plus the dataset's own."""

from __future__ import annotations

from collections.abc import Iterable

from pacsdash.dashboard.viewer.frames import VOIWindow

#: Common CT windows in Hounsfield units (center, width).
CT_PRESETS: tuple[VOIWindow, ...] = (
    VOIWindow(40.0, 400.0, "Soft tissue"),
    VOIWindow(-600.0, 1500.0, "Lung"),
    VOIWindow(400.0, 1800.0, "Bone"),
    VOIWindow(40.0, 80.0, "Brain"),
)


def window_presets(modality: str, dataset_windows: Iterable[VOIWindow] = (), units: str = "") -> list[VOIWindow]:
    """Return the presets offered for a series, in keyboard order (keys 1-9).

    Parameters
    ----------
    modality : str
        (0008,0060) *Modality*; CT (or values in HU) gets :data:`CT_PRESETS`.
    dataset_windows : iterable of VOIWindow
        The dataset's own windows, added after the CT presets unless one
        with the same center and width is already there.
    units : str, optional
        Unit of the values; ``"HU"`` also gets the CT presets.

    Returns
    -------
    list of VOIWindow
        Labels are unique.
    """
    presets = list(CT_PRESETS) if modality.upper() == "CT" or units.upper() == "HU" else []
    seen = {(p.center, p.width) for p in presets}
    labels = {p.explanation for p in presets}
    for window in dataset_windows:
        if (window.center, window.width) in seen:
            continue
        label = window.explanation or "Dataset"
        if label in labels:
            label = f"{label} (dataset)"
        seen.add((window.center, window.width))
        labels.add(label)
        presets.append(VOIWindow(window.center, window.width, label, window.function))
    return presets
