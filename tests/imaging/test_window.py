"""The window functions of PS3.3 C.11.2.1.2 / C.11.2.1.3 and the PS3.18 window parameter."""

from __future__ import annotations

import numpy as np
import pytest

from pacsdash import imaging
from pacsdash.imaging.window import Window, apply_window, make_window


def test_parse_window():
    assert imaging.parse_window("40,400") == Window(40.0, 400.0, "linear")
    assert imaging.parse_window(" -600 , 1500 , linear-exact ") == Window(-600.0, 1500.0, "linear-exact")
    assert imaging.parse_window("40,400,SIGMOID").function == "sigmoid"
    assert make_window((40, 400, "LINEAR_EXACT")).function == "linear-exact"


@pytest.mark.parametrize(
    "text",
    ["40", "40,400,linear,x", "a,400", "40,nan", "40,0", "40,0.5,linear", "40,0,linear-exact", "40,-1,sigmoid", "40,400,cubic"],
)
def test_parse_window_rejects(text):
    with pytest.raises(imaging.InvalidParameter):
        imaging.parse_window(text)


def test_linear():
    # c = 50, w = 11: below 44.5 -> 0, above 54.5 -> 255, linear in between
    window = Window(50, 11)
    x = np.array([-1e9, 44.5, 44.6, 49.5, 54.5, 54.6, 1e9])
    y = apply_window(x, window)
    assert y[0] == 0 and y[1] == 0 and y[-2] == 255 and y[-1] == 255
    assert y[3] == pytest.approx(127.5)
    assert y[4] == pytest.approx(255)
    assert y[2] == pytest.approx((44.6 - 49.5) / 10 * 255 + 127.5, abs=1e-3)  # float32: far below 1/255
    assert y.dtype == np.float32  # a big frame's display copies are half the memory of float64


def test_linear_width_one_is_a_threshold():
    y = apply_window(np.array([49.0, 49.5, 49.6, 51.0]), Window(50, 1))
    assert list(y) == [0, 0, 255, 255]


def test_linear_exact():
    y = apply_window(np.array([44.9, 45.0, 50.0, 55.0, 55.1]), Window(50, 10, "linear-exact"))
    assert list(y) == pytest.approx([0, 0, 127.5, 255, 255])


def test_sigmoid():
    x = np.linspace(-1000, 1000, 101)
    y = apply_window(x, Window(0, 100, "sigmoid"))
    assert y[50] == pytest.approx(127.5)
    assert np.all(np.diff(y) >= 0)
    assert y[0] == pytest.approx(0, abs=1e-6) and y[-1] == pytest.approx(255, abs=1e-6)
