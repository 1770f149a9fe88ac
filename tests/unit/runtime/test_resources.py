"""Unit tests of the scheduling arithmetic."""

from __future__ import annotations

import pytest
from kray.scheduling import resources as res


def test_fits_and_subtract_add() -> None:
    available = {"CPU": 2.0, "GPU": 1.0, "gizmo": 0.5}
    assert res.fits(available, {"CPU": 2.0})
    assert not res.fits(available, {"CPU": 2.5})
    assert not res.fits(available, {"gizmo": 1.0})
    assert not res.fits(available, {"absent": 1.0})
    assert res.fits(available, {"absent": 0.0})
    res.subtract(available, {"CPU": 1.0, "GPU": 0.5})
    assert available == {"CPU": 1.0, "GPU": 0.5, "gizmo": 0.5}
    res.add(available, {"CPU": 1.0, "GPU": 0.5})
    assert available["CPU"] == 2.0 and available["GPU"] == 1.0


def test_fractional_amounts_do_not_drift() -> None:
    available = {"CPU": 1.0}
    for _ in range(10):
        res.subtract(available, {"CPU": 0.1})
    assert res.fits(available, {"CPU": 0.0})
    assert not res.fits(available, {"CPU": 0.1})


def test_task_request_defaults_and_validation() -> None:
    assert res.task_request(None, None, None, None) == {"CPU": 1.0}
    assert res.task_request(0, 1, 1000, {"x": 2}) == {"GPU": 1.0, "memory": 1000.0, "x": 2.0}
    with pytest.raises(ValueError, match="num_cpus"):
        res.task_request(None, None, None, {"CPU": 1})
    with pytest.raises(ValueError, match="negative"):
        res.task_request(None, None, None, {"x": -1})


def test_take_gpus_gives_whole_free_gpus_or_a_share_of_the_fullest_one() -> None:
    free = {0: 1.0, 1: 1.0, 2: 0.5}
    assert res.take_gpus(free, 0.5) == {2: 0.5}  # the fullest GPU that fits the share
    assert free[2] == 0.0
    assert res.take_gpus(free, 2) == {0: 1.0, 1: 1.0}
    assert free == {0: 0.0, 1: 0.0, 2: 0.0}
    assert res.take_gpus(free, 1) == {}
    assert res.take_gpus(free, 0) == {}
