"""The fault tests' crash points: off without the folder, armed for everyone or for one subject."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pay_api.failpoints import failpoint

CRASH = "from pay_api.failpoints import failpoint; failpoint('charge.after_confirm', *{subjects!r})"


def reach(directory: Path, *subjects: str) -> int:
    """Reach the point in a process of its own; its exit code (-SIGKILL when it died there)."""
    code = CRASH.format(subjects=subjects)
    env = {**os.environ, "PAY_API_FAILPOINTS_DIR": str(directory)}
    return subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode


def test_without_the_folder_nothing_happens(monkeypatch):
    monkeypatch.delenv("PAY_API_FAILPOINTS_DIR", raising=False)
    failpoint("charge.after_confirm", "anyone")  # returns


def test_an_armed_point_kills_the_first_process_and_disarms(tmp_path):
    (tmp_path / "charge.after_confirm").touch()
    assert reach(tmp_path, "payment-1") == -signal.SIGKILL
    assert not (tmp_path / "charge.after_confirm").exists()
    assert reach(tmp_path, "payment-1") == 0


@pytest.mark.parametrize("subjects", [("user-9",), ("payment-2", "user-9"), ()])
def test_a_point_armed_for_a_subject_spares_the_others(tmp_path, subjects):
    armed = tmp_path / "charge.after_confirm"
    armed.write_text("user-7\n")
    assert reach(tmp_path, *subjects) == 0
    assert armed.exists()
    assert reach(tmp_path, "payment-3", "user-7") == -signal.SIGKILL
    assert not armed.exists()
