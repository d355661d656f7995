"""`import fastnn` runs this first: a clear ImportError when the compiled kernels are not there.

Without it, importing fastnn from a source tree that was never built (the repository's root is on
sys.path when Python starts there) fails deep inside the package with "cannot import name '_runtime'
from partially initialized module 'fastnn._kernels' (most likely due to a circular import)", which
names neither the cause nor the cure. Every compiled module has a ``.pyi`` stub beside it (the
project's rule), so the stubs list the extension modules that must be there; only file names are
looked at, nothing is imported.
"""

from __future__ import annotations

import os
from importlib.machinery import EXTENSION_SUFFIXES

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def missing_extensions(package_dir: str = PACKAGE_DIR) -> list[str]:
    """The kernel modules (fastnn/_kernels/X.pyi) without a compiled extension file beside them."""
    kernels = os.path.join(package_dir, "_kernels")
    try:
        names = set(os.listdir(kernels))
    except OSError:   # not a plain directory (a zip, a frozen app): nothing to check
        return []
    stubs = sorted(n[:-4] for n in names if n.endswith(".pyi"))
    return [s for s in stubs if not any(s + suffix in names for suffix in EXTENSION_SUFFIXES)]


def message(package_dir: str, missing: list[str]) -> str:
    """What happened and what to run."""
    root = os.path.dirname(package_dir)
    which = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    if os.path.isfile(os.path.join(root, "setup.py")):
        return (f"fastnn is being imported from its source tree ({package_dir}), but its compiled extensions "
                f"are not built there (missing: {which} in fastnn/_kernels). Build them in place: run "
                f"`pip install -e .` (or `python setup.py build_ext --inplace`) in {root}; or, to use an "
                "installed fastnn instead, run Python from another directory.")
    return (f"fastnn's compiled extensions are missing from {package_dir} (missing: {which} in fastnn/_kernels): "
            "the installation is incomplete. Reinstall it: `pip install --force-reinstall fastnn` "
            "(from a source checkout: `pip install .`).")


def check(package_dir: str = PACKAGE_DIR) -> None:
    missing = missing_extensions(package_dir)
    if missing:
        raise ImportError(message(package_dir, missing), name="fastnn", path=package_dir)


check()
