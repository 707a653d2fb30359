"""Progress bars are on for a person at a terminal and quiet in logs, CI and on request."""

from __future__ import annotations

import io

import pytest

from deeptalk_ser.utils import progress as pg


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("env,tty,off", [({}, True, False), ({}, False, True), ({"CI": "true"}, True, True),
                                         ({"DEEPTALK_PROGRESS": "0"}, True, True),
                                         ({"DEEPTALK_PROGRESS": "1", "CI": "1"}, False, False)])
def test_progress_switch(monkeypatch: pytest.MonkeyPatch, env: dict, tty: bool, off: bool) -> None:
    for key in ("CI", "DEEPTALK_PROGRESS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(pg.sys, "stderr", Tty() if tty else io.StringIO())
    assert pg.progress_disabled() is off
    assert list(pg.progress(range(3), desc="x")) == [0, 1, 2]  # the items pass through either way


def test_short_runs_get_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPTALK_PROGRESS", "1")
    assert pg.progress(range(1), disable_below=2).disable
    assert not pg.progress(range(5), disable_below=2).disable
