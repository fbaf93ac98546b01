"""VOI LUT windows: the window functions of PS3.3 C.11.2.1.2 and C.11.2.1.3.

The output range is fixed to 8-bit display values, ``y_min = 0`` and
``y_max = 255``, which is what rendered media types need (PS3.18 8.3.5.1.3).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pacsdash.imaging.errors import InvalidParameter

#: PS3.18 8.3.5.1.3 function names, and the (0028,1056) *VOI LUT Function*
#: defined terms they stand for (PS3.3 C.11.2.1.3).
FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}


class Window(NamedTuple):
    """A VOI window: (0028,1050) *Window Center*, (0028,1051) *Window Width*, function.

    Attributes
    ----------
    center : float
        Window center, in modality output units (e.g. Hounsfield units).
    width : float
        Window width: >= 1 for ``"linear"``, > 0 otherwise.
    function : str
        ``"linear"`` (default), ``"linear-exact"`` or ``"sigmoid"``
        (PS3.18 8.3.5.1.3; PS3.3 C.11.2.1.3 LINEAR, LINEAR_EXACT, SIGMOID).
    """

    center: float
    width: float
    function: str = "linear"


def normalize_function(name: str | None) -> str:
    """Return the PS3.18 spelling of a window function name.

    Parameters
    ----------
    name : str or None
        ``"linear"``, ``"linear-exact"``, ``"sigmoid"`` or a (0028,1056)
        *VOI LUT Function* term such as ``"LINEAR_EXACT"``; ``None`` means linear.

    Returns
    -------
    str
        One of the keys of :data:`FUNCTIONS`.

    Raises
    ------
    InvalidParameter
        For any other name.
    """
    if name is None or not str(name).strip():
        return "linear"
    key = str(name).strip().lower().replace("_", "-")
    if key not in FUNCTIONS:
        raise InvalidParameter(f"unknown window function {name!r}: expected one of {', '.join(FUNCTIONS)}")
    return key


def make_window(value: Window | tuple | list | str) -> Window:
    """Return a validated :class:`Window`.

    Parameters
    ----------
    value : Window, tuple, list or str
        ``(center, width)``, ``(center, width, function)`` or the PS3.18
        8.3.5.1.3 query text ``"center,width[,function]"``.

    Returns
    -------
    Window

    Raises
    ------
    InvalidParameter
        When malformed, not finite, or the width is out of range for the
        function (PS3.3 C.11.2.1.2.1: width >= 1 for linear; C.11.2.1.3:
        width > 0 for linear-exact and sigmoid).
    """
    if isinstance(value, str):
        parts: list = [part.strip() for part in value.split(",")]
    elif isinstance(value, tuple | list):
        parts = list(value)
    else:
        raise InvalidParameter(f"window must be (center, width[, function]), not {type(value).__name__}")
    if len(parts) not in (2, 3):
        raise InvalidParameter(f"window must be center,width[,function]; got {value!r}")
    try:
        center, width = float(parts[0]), float(parts[1])
    except (TypeError, ValueError) as exc:
        raise InvalidParameter(f"window center and width must be numbers; got {value!r}") from exc
    if not (np.isfinite(center) and np.isfinite(width)):
        raise InvalidParameter(f"window center and width must be finite; got {value!r}")
    function = normalize_function(parts[2] if len(parts) == 3 else None)
    if function == "linear" and width < 1:
        raise InvalidParameter(f"a linear window needs a width >= 1 (PS3.3 C.11.2.1.2.1); got {width}")
    if width <= 0:
        raise InvalidParameter(f"a {function} window needs a width > 0 (PS3.3 C.11.2.1.3); got {width}")
    return Window(center, width, function)


def parse_window(text: str) -> Window:
    """Parse the PS3.18 8.3.5.1.3 ``window`` query parameter.

    Parameters
    ----------
    text : str
        ``"center,width,function"``, e.g. ``"40,400,linear"``; the function
        may be left out (linear).

    Returns
    -------
    Window

    Raises
    ------
    InvalidParameter
        When malformed (a 400 Bad Request).
    """
    return make_window(text)


def apply_window(values: np.ndarray, window: Window, y_min: float = 0.0, y_max: float = 255.0) -> np.ndarray:
    """Map modality values through a VOI window to display values.

    Parameters
    ----------
    values : numpy.ndarray
        Modality LUT output (PS3.3 C.11.1).
    window : Window
        A window from :func:`make_window`.
    y_min, y_max : float, optional
        Output range; 0 and 255 for 8-bit display.

    Returns
    -------
    numpy.ndarray
        ``float32`` values in ``[y_min, y_max]``:

        * linear, PS3.3 C.11.2.1.2.1: ``x <= c - 0.5 - (w-1)/2`` gives
          ``y_min``, ``x > c - 0.5 + (w-1)/2`` gives ``y_max``, else
          ``((x - (c - 0.5)) / (w-1) + 0.5) * (y_max - y_min) + y_min``;
        * linear-exact, C.11.2.1.3.2: the same with ``c`` and ``w`` unaltered;
        * sigmoid, C.11.2.1.3.1: ``(y_max - y_min) / (1 + exp(-4 (x - c) / w)) + y_min``.
    """
    x = np.asarray(values, dtype=np.float32)
    center, width = window.center, window.width
    span = y_max - y_min
    if window.function == "sigmoid":
        with np.errstate(over="ignore"):
            return span / (1.0 + np.exp(-4.0 * (x - center) / width)) + y_min
    if window.function == "linear":
        center, width = center - 0.5, width - 1.0
    low, high = center - width / 2.0, center + width / 2.0
    if width <= 0:
        # linear with width 1: a threshold at c - 0.5
        return np.where(x <= low, y_min, y_max).astype(np.float32)
    # The linear ramp is y_min at x = low and y_max at x = high: clipping it
    # gives the piecewise definition in two passes over the frame.
    out = x - center
    out *= span / width
    out += 0.5 * span + y_min
    return np.clip(out, y_min, y_max, out=out)
