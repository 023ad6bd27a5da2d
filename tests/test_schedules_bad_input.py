"""Gaussian paths must be noising paths: the signal-to-noise ratio a/s falls as t rises, else a named error."""

from __future__ import annotations

import numpy as np
import pytest

from cotj.planning import schedules

G = np.linspace(0.01, 1.0, 50)
TABLE = np.linspace(0.999, 0.01, 1000)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: schedules.vp(G, TABLE[::-1]), r"signal-to-noise ratio a/s must fall as t rises, but from t = 0.01 to t = 0.03"),
        (lambda: schedules.vp(G, np.r_[TABLE[:500], np.full(500, TABLE[499])]), r"signal-to-noise ratio a/s must fall"),
        (lambda: schedules.vp(G * 1.5, TABLE), r"grid must lie in \[0, 1\]"),
        (lambda: schedules.vp(np.r_[G[:-1], np.nan], TABLE), r"grid must lie in \[0, 1\]"),
        (lambda: schedules.ve(G, rho=-7.0), r"rho must be positive and finite, got -7.0"),
        (lambda: schedules.ve(G, rho=float("nan")), r"rho must be positive and finite, got nan"),
        (lambda: schedules.ve(G, sigma_max=float("inf")), r"need 0 < sigma_min < sigma_max < inf"),
        (lambda: schedules.ve(G, rho=1e-3), r"schedule s must be finite"),
        (lambda: schedules.linear_flow(G * 2), r"schedule a must be finite and >= 0"),
        (lambda: schedules.check_schedule(G, G, 1 - G), r"from t = 0.01 to t = 0.0302041 it goes from 0.01/0.99"),
        (lambda: schedules.check_schedule(G, np.ones(50), np.ones(50)), r"signal-to-noise ratio a/s must fall"),
        (lambda: schedules.check_schedule([0.0, 1.0], [0.0, 1.0], [0.0, 1.0]), r"both 0 at a level"),
        (lambda: schedules.check_schedule(G, G[:5], G), r"grid, a and s must be 1-D of one length"),
    ],
)
def test_a_path_whose_signal_to_noise_ratio_does_not_fall_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_valid_paths_in_any_order_and_with_the_end_points_pass():
    descending = G[::-1]
    np.testing.assert_array_equal(schedules.ve(descending).s, schedules.ve(G).s[::-1])
    np.testing.assert_array_equal(schedules.linear_flow([0.0, 1.0]), [[1.0, 0.0], [0.0, 1.0]])
    a, s = schedules.vp(G, TABLE)
    assert np.all(np.diff(a / s) < 0)
