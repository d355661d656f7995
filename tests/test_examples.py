"""Every script in examples/ runs to completion and meets its own bar (exit code 0)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastnn

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py")) if EXAMPLES.is_dir() else []


def test_examples_are_found():
    if not EXAMPLES.is_dir():
        pytest.skip("examples/ is not beside tests/ (the tests were copied out of the source tree)")
    assert {"lecture_loop.py", "fit_early_stopping.py", "regression_mse.py", "overfitting_dropout.py",
            "loss_landscape.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_exits_0(script, tmp_path):
    env = dict(os.environ)
    # the fastnn under test (a source checkout or an installed wheel), whatever the working directory
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(fastnn.__file__).parent.parent),
                                                      env.get("PYTHONPATH")]))
    # one thread: results do not depend on it, and the shared test machines stay responsive
    env["OMP_NUM_THREADS"] = "1"
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip()   # it printed its result
    if script == "overfitting_dropout.py" and "no figure" not in proc.stdout:
        assert (tmp_path / "overfitting_dropout.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if script == "loss_landscape.py" and "no figure" not in proc.stdout:
        saved = proc.stdout.split("saved the loss landscape to ", 1)[1].splitlines()[0]
        assert Path(saved).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
