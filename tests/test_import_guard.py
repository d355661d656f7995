"""`import fastnn` from a source tree whose extensions are not built: an ImportError that says what
happened and what to run (instead of "partially initialized module ... circular import")."""

import shutil
import subprocess
import sys
from pathlib import Path

import fastnn
from fastnn import _build_check

PACKAGE = Path(fastnn.__file__).parent


def _copy_without_extensions(dst: Path, with_setup_py: bool) -> Path:
    """A copy of the package (sources, stubs, no compiled files) under dst, as a fresh clone has it."""
    shutil.copytree(PACKAGE, dst / "fastnn", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__", "*.c"))
    if with_setup_py:
        (dst / "setup.py").write_text("# the project's setup.py\n")
    return dst


def _import_in(cwd: Path):
    return subprocess.run([sys.executable, "-c", "import fastnn"], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ""})


def test_unbuilt_source_tree_says_what_happened_and_what_to_run(tmp_path):
    root = _copy_without_extensions(tmp_path, with_setup_py=True)
    result = _import_in(root)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: fastnn is being imported from its source tree")
    assert "its compiled extensions are not built there (missing: _activations, " in last
    assert "`pip install -e .`" in last and "`python setup.py build_ext --inplace`" in last
    assert "run Python from another directory" in last
    assert "circular import" not in result.stderr


def test_an_install_without_extensions_says_to_reinstall(tmp_path):
    root = _copy_without_extensions(tmp_path, with_setup_py=False)
    last = _import_in(root).stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: fastnn's compiled extensions are missing from ")
    assert "pip install --force-reinstall fastnn" in last


def test_one_missing_module_is_named(tmp_path):
    root = _copy_without_extensions(tmp_path, with_setup_py=True)
    for so in (PACKAGE / "_kernels").iterdir():
        if so.name.endswith((".so", ".pyd")) and not so.name.startswith("_clip."):
            shutil.copy2(so, root / "fastnn" / "_kernels" / so.name)
    assert _build_check.missing_extensions(str(root / "fastnn")) == ["_clip"]
    assert "(missing: _clip in fastnn/_kernels)" in _import_in(root).stderr


def test_the_built_package_passes_the_check():
    assert _build_check.missing_extensions() == []
    stubs = sorted(p.stem for p in (PACKAGE / "_kernels").glob("*.pyi"))
    assert len(stubs) >= 10   # every compiled module has a stub: the list the check relies on
