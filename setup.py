"""Build fastnn's compiled kernels.

Every ``fastnn/_kernels/*.pyx`` becomes an extension module. Some of them (and their ``.pxd``) are
generated: each ``fastnn/_kernels/*.tp`` is a Tempita template rendered to the file without ``.tp``
before cythonize (build products, listed in .gitignore). Cython directives are set here, once, for
all modules. Environment switches:

* ``FASTNN_NO_OPENMP=1``    build without OpenMP (prange runs serially, one thread).
* ``FASTNN_DEBUG_CYTHON=1`` bounds checks, wraparound and initialisation checks on; -O0 -g.
* ``FASTNN_EXTENSIONS=a,b`` (development only) build just these kernel modules.
* ``FASTNN_BUILD_JOBS=N``   cythonize and compile N modules at a time (default: the usable CPUs;
  ``build_ext -j N`` also sets it). ``FASTNN_BUILD_PROGRESS=0`` silences the progress lines.

Parallel build: as scikit-learn's setup.py did before Meson (``cythonize(nthreads=...)`` and
setuptools' ``build_ext`` ``parallel``, there from SKLEARN_BUILD_PARALLEL; numpy.distutils read
NPY_NUM_BUILD_JOBS), but on by default, so that a plain ``pip install .`` uses every CPU: the modules
are cythonized in a process pool (only where processes fork, so that no worker re-runs this file) and
compiled by a thread pool, each gcc a process of its own. A full build is ~2 minutes on 2 cores.

Progress: pip shows a build's output only with -v (otherwise only "still running..."), so the
progress lines ("fastnn: [3/10] compiled _dense (25 s)") also go to the terminal (/dev/tty) when
pip runs the build in one; with -v, ``python setup.py ...`` or no terminal they are on stderr only.
"""

import hashlib
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from glob import glob
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent.resolve()
DEBUG = os.environ.get("FASTNN_DEBUG_CYTHON", "") not in ("", "0")
NO_OPENMP = os.environ.get("FASTNN_NO_OPENMP", "") not in ("", "0")

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "nonecheck": DEBUG,
    "embedsignature": True,
    "freethreading_compatible": False,
}


def _probe_openmp(compiler):
    """Return the (compile, link) flags that make `compiler` build OpenMP code, or None."""
    candidates = [(["-fopenmp"], ["-fopenmp"]), (["/openmp"], []), (["-Xpreprocessor", "-fopenmp"], ["-lomp"])]
    src = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
    with tempfile.TemporaryDirectory() as tmp:
        c_file = os.path.join(tmp, "omp_probe.c")
        with open(c_file, "w") as f:
            f.write(src)
        for cflags, lflags in candidates:
            try:
                objs = compiler.compile([c_file], output_dir=tmp, extra_postargs=cflags)
                compiler.link_executable(objs, "omp_probe", output_dir=tmp, extra_postargs=lflags)
            except Exception:  # noqa: BLE001 - any failure means "this flag does not work"
                continue
            return cflags, lflags
    return None


# The build switches and this file change the generated C (directives) and the compiled objects
# (flags), but not the sources' timestamps: rebuild everything when they differ from the last build.
_STAMP = HERE / "build" / "fastnn-build-switches.txt"
_SWITCHES = (f"debug={DEBUG} no_openmp={NO_OPENMP} "
             f"setup.py={hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]}")
_SWITCHED = not _STAMP.exists() or _STAMP.read_text() != _SWITCHES
# The same for the generated C alone, recorded as soon as cythonize is done: pip runs this file once
# for the metadata and again for the wheel, and the second run must not cythonize everything again.
_CY_STAMP = HERE / "build" / "fastnn-cython-switches.txt"
_CY_SWITCHED = not _CY_STAMP.exists() or _CY_STAMP.read_text() != _SWITCHES


def _default_jobs():
    """FASTNN_BUILD_JOBS, else the CPUs this process may run on."""
    text = os.environ.get("FASTNN_BUILD_JOBS", "").strip()
    if text:
        try:
            jobs = int(text)
        except ValueError:
            raise SystemExit(f"FASTNN_BUILD_JOBS must be a whole number >= 1, got {text!r}") from None
        if jobs < 1:
            raise SystemExit(f"FASTNN_BUILD_JOBS must be a whole number >= 1, got {text!r}")
        return jobs
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # macOS, Windows
        return os.cpu_count() or 1


_T0 = time.perf_counter()


def _progress(text):
    """A progress line on stderr, and on the terminal when pip hides stderr (see the module docstring)."""
    if os.environ.get("FASTNN_BUILD_PROGRESS", "") == "0":
        return
    line = f"fastnn: {text} [{time.perf_counter() - _T0:.0f} s]"
    print(line, file=sys.stderr, flush=True)
    if "PIP_BUILD_TRACKER" in os.environ and not sys.stderr.isatty():
        try:
            with open("/dev/tty", "w") as tty:   # \r: over pip's spinner character, if it drew one
                tty.write(f"\r{line}\n")
        except OSError:   # no terminal (CI, a pipe): stderr only
            pass


class BuildExt(build_ext):
    """build_ext that probes the compiler for OpenMP and records the flags it used."""

    def finalize_options(self):
        super().finalize_options()
        if _SWITCHED:
            self.force = True
        if not self.parallel:   # -j N / --parallel N win; else FASTNN_BUILD_JOBS or every CPU
            self.parallel = _default_jobs()
        self._done, self._lock = 0, threading.Lock()

    def run(self):
        super().run()
        _STAMP.parent.mkdir(exist_ok=True)
        _STAMP.write_text(_SWITCHES)

    def build_extensions(self):
        omp = None if NO_OPENMP else _probe_openmp(self.compiler)
        if omp is None and not NO_OPENMP:
            print("fastnn: compiler has no OpenMP; building single-threaded kernels", file=sys.stderr)
        is_msvc = self.compiler.compiler_type == "msvc"
        if is_msvc:
            cflags = ["/Od", "/Zi"] if DEBUG else ["/O2"]
        else:
            cflags = ["-O0", "-g"] if DEBUG else ["-O3"]
            # The kernels never read errno or the floating-point exception flags. Without errno GCC
            # vectorises sqrt (Adam: 3.8 -> 1.0 ns/element); without trapping math it may evaluate both
            # sides of a select such as leaky_relu's `x if x > 0 else s * x` and drop the branch, which
            # random signs mispredict half the time (5.4 -> 0.3 ns/element). IEEE results are unchanged.
            cflags += ["-fno-math-errno", "-fno-trapping-math", "-Wno-unused-function", "-Wno-unreachable-code"]
        lflags = []
        if omp is not None:
            cflags += omp[0]
            lflags += omp[1]
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args) + cflags
            ext.extra_link_args = list(ext.extra_link_args) + lflags
        _write_build_info(self.build_lib, cflags, lflags, omp is not None)
        n = len(self.extensions)
        jobs = min(self.parallel, n) if self.parallel > 1 else 1
        _progress(f"compiling {n} kernel module{'s' if n > 1 else ''}, {jobs} at a time")
        super().build_extensions()

    def build_extension(self, ext):
        start = time.perf_counter()
        super().build_extension(ext)   # may skip an up-to-date module
        with self._lock:   # build_extensions calls this from a thread pool when parallel
            self._done += 1
            _progress(f"[{self._done}/{len(self.extensions)}] {ext.name.rpartition('.')[2]} "
                      f"({time.perf_counter() - start:.0f} s)")


def _write_build_info(build_lib, cflags, lflags, openmp):
    """Record how the kernels were built in fastnn/_build_info.py (in-place and in build_lib)."""
    text = (
        "# Generated by setup.py at build time; not tracked by git.\n"
        f"COMPILER_FLAGS = {' '.join(cflags)!r}\n"
        f"LINK_FLAGS = {' '.join(lflags)!r}\n"
        f"OPENMP_REQUESTED = {openmp!r}\n"
        f"DEBUG_CYTHON = {DEBUG!r}\n"
    )
    targets = {HERE / "fastnn" / "_build_info.py"}
    if build_lib:
        targets.add(Path(build_lib) / "fastnn" / "_build_info.py")
    for target in targets:
        if target.parent.is_dir():
            target.write_text(text)


def render_templates():
    """Render each fastnn/_kernels/X.tp to X when X is missing or older than a template of its module (the
    templates of one module share its table: _activations.pxd.tp reads _activations.pyx.tp's) or this file.
    X is rewritten only if its text changes, so that cythonize does not rebuild its dependents for nothing."""
    from Cython import Tempita

    templates = sorted((HERE / "fastnn" / "_kernels").glob("*.tp"))
    for template in templates:
        out = template.with_suffix("")
        module = template.name.split(".")[0]
        sources = [t for t in templates if t.name.split(".")[0] == module] + [HERE / "setup.py"]
        if out.exists() and out.stat().st_mtime >= max(t.stat().st_mtime for t in sources):
            continue
        text = Tempita.sub(template.read_text(encoding="utf-8"), __name=str(template))
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            out.write_text(text, encoding="utf-8")


def extensions():
    render_templates()
    only = {s.strip() for s in os.environ.get("FASTNN_EXTENSIONS", "").split(",") if s.strip()}
    exts = []
    for pyx in sorted(glob("fastnn/_kernels/*.pyx")):
        name = Path(pyx).stem
        if only and name not in only:
            continue
        exts.append(
            Extension(
                f"fastnn._kernels.{name}",
                [pyx],
                include_dirs=[np.get_include(), "csrc"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
            )
        )
    # a process pool only where workers fork: a spawned one would import the running script again
    jobs = _default_jobs() if multiprocessing.get_start_method() == "fork" else 0
    stale = [e for e in exts if _CY_SWITCHED or _c_file_stale(e.sources[0])]
    if stale:
        _progress(f"cythonizing {len(stale)} kernel module{'s' if len(stale) > 1 else ''} to C"
                  + (f", {min(jobs, len(stale))} at a time" if jobs > 1 else ""))
    out = cythonize(exts, compiler_directives=DIRECTIVES, quiet=True, force=_CY_SWITCHED, nthreads=jobs)
    if stale:
        _progress("cythonized")
    if _CY_SWITCHED and not only:   # (a partial build leaves the other modules' C as it was)
        _CY_STAMP.parent.mkdir(exist_ok=True)
        _CY_STAMP.write_text(_SWITCHES)
    return out


def _c_file_stale(pyx):
    """True if pyx's .c file is missing or older than the .pyx (a rough guess, for the progress line only)."""
    c_file = Path(pyx).with_suffix(".c")
    return not c_file.exists() or c_file.stat().st_mtime < Path(pyx).stat().st_mtime


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
