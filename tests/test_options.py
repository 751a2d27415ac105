"""xcorrdiff.set_options: session-wide or as a context manager; validated."""

from __future__ import annotations

import pytest

import xcorrdiff


def test_context_manager_restores_previous_values() -> None:
    assert xcorrdiff.get_options() == {"model": None, "device": None}
    with xcorrdiff.set_options(model="some_dir", device="cpu"):
        assert xcorrdiff.get_options() == {"model": "some_dir", "device": "cpu"}
        with xcorrdiff.set_options(device="cuda"):
            assert xcorrdiff.get_options()["device"] == "cuda"
        assert xcorrdiff.get_options()["device"] == "cpu"
    assert xcorrdiff.get_options() == {"model": None, "device": None}


def test_plain_call_sets_for_the_session() -> None:
    xcorrdiff.set_options(device="cpu")
    try:
        assert xcorrdiff.get_options()["device"] == "cpu"
    finally:
        xcorrdiff.set_options(device=None)
    assert xcorrdiff.get_options()["device"] is None


def test_unknown_option_and_bad_values() -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['modle'\]"):
        xcorrdiff.set_options(modle="x")
    with pytest.raises(TypeError, match="model=3 is invalid"):
        xcorrdiff.set_options(model=3)
    with pytest.raises(TypeError, match="device=5 is invalid"):
        xcorrdiff.set_options(device=5)
    assert xcorrdiff.get_options() == {"model": None, "device": None}
