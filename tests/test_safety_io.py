"""Model-file safety (issue 9 items 6 and 8): compressed or oversized members, out-of-range scalars,
temporary files left by killed writers, invalid paths."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastnn as fnn
from fastnn import io as fio

ROOT = pathlib.Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------------ helpers


def _trained(tmp_path, optimizer="adam", dtype="float64"):
    model = fnn.Sequential([fnn.Dense(5, 8, activation="relu"), fnn.Dropout(0.25), fnn.Dense(8, 3)], dtype=dtype,
                           seed=3)
    model.compile(optimizer=optimizer, loss="cross_entropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((32, 5)), rng.integers(0, 3, 32), epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "good.fnn"
    model.save(path)
    return model, path


def _rewrite(src, dst, mutate):
    """Copy a model file through np.load and fastnn's writer, letting mutate(header, arrays) tamper with it."""
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop(fio.HEADER).tobytes())
    mutate(header, arrays)
    with open(dst, "wb") as f:
        fio._write_npz(f, {fio.HEADER: np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays})
    return dst


def _load_error(path, match, exc=ValueError):
    with pytest.raises(exc, match=match) as info:
        fio.load_model(path)
    assert str(path) in str(info.value)
    return info


def _npy_header(dtype, shape):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                              "shape": tuple(shape)})
    return buf.getvalue()


def _header_for(n_in, n_out):
    return {"format": fio.FORMAT, "format_version": fio.FORMAT_VERSION,
            "model": {"class": "Sequential", "dtype": "float64", "seed": 0, "step": 0, "epoch": 0,
                      "layers": [{"class": "Dense", "config": {"in_features": n_in, "out_features": n_out,
                                                               "use_bias": False}}]},
            "training": None}


def _write_member(zf, name, header, nbytes, method):
    info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = method
    with zf.open(info, "w", force_zip64=True) as member:
        member.write(header)
        zeros = bytes(1 << 20)
        left = nbytes
        while left:
            member.write(zeros[:min(left, len(zeros))])
            left -= min(left, len(zeros))


def _peak_of(fn):
    """(result, peak bytes traced while fn ran, above what was traced before)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------------------------------------ item 6: members

def test_a_small_compressed_file_declaring_a_huge_layer_is_refused_before_inflating(tmp_path):
    n_in, n_out = 4096, 2048                      # 64 MiB of float64 zeros, deflated to ~64 KiB
    path = tmp_path / "bomb.fnn"
    text = json.dumps(_header_for(n_in, n_out)).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(fio.HEADER + ".npy", _npy_header(np.uint8, (len(text),)) + text)
        _write_member(zf, "param/0.weight", _npy_header(np.float64, (n_in, n_out)), n_in * n_out * 8,
                      zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    info, peak = _peak_of(lambda: _load_error(path, r"array '__fastnn__' is compressed \(zip method 8\); fastnn "
                                                    r"model files hold uncompressed \(stored\) members only"))
    assert peak < 1 << 20, peak
    # with only the weights compressed, the header is read and the weights are refused, still before inflating
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(fio.HEADER + ".npy", _npy_header(np.uint8, (len(text),)) + text)
        _write_member(zf, "param/0.weight", _npy_header(np.float64, (n_in, n_out)), n_in * n_out * 8,
                      zipfile.ZIP_DEFLATED)
    info, peak = _peak_of(lambda: _load_error(path, r"array 'param/0.weight' is compressed"))
    assert peak < 1 << 20, peak


def test_np_savez_compressed_files_are_refused_and_np_savez_files_load(tmp_path):
    model, path = _trained(tmp_path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    _load_error(tmp_path / "c.npz", r"is compressed")
    np.savez(tmp_path / "s.npz", **arrays)   # numpy's own uncompressed writer: the documented format
    back = fio.load_model(tmp_path / "s.npz")
    assert all(np.array_equal(a.data, b.data) for a, b in zip(model.parameters(), back.parameters()))


def test_zip_declared_sizes_must_match_the_npy_header_and_the_file(tmp_path):
    n = 6
    text = json.dumps(_header_for(n, n)).encode()
    head = _npy_header(np.uint8, (len(text),)) + text
    weight = _npy_header(np.float64, (n, n))
    # one more byte of data than the shape needs
    with zipfile.ZipFile(tmp_path / "long", "w") as zf:
        zf.writestr(fio.HEADER + ".npy", head)
        zf.writestr("param/0.weight.npy", weight + bytes(n * n * 8 + 1))
    _load_error(tmp_path / "long", r"array 'param/0.weight': its zip entry declares \d+ bytes, but its \.npy "
                                   r"header and shape \(6, 6\) imply \d+")
    # a stored member whose declared size runs past the end of the file (central directory edited)
    good = tmp_path / "good"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr(fio.HEADER + ".npy", head)
        zf.writestr("param/0.weight.npy", weight + bytes(n * n * 8))
    fio.load_model(good)
    data = bytearray(good.read_bytes())
    cd = data.rindex(b"PK\x01\x02")   # the last central-directory entry: param/0.weight
    size = int.from_bytes(data[cd + 20:cd + 24], "little")
    for off in (20, 24):              # compressed and uncompressed size
        data[cd + off:cd + off + 4] = (size + 10 ** 8).to_bytes(4, "little")
    (tmp_path / "past_end").write_bytes(bytes(data))
    _load_error(tmp_path / "past_end", r"array 'param/0.weight' declares \d+ bytes, more than the file holds")


def test_loading_a_legit_file_needs_about_the_weights_size_beyond_the_model(tmp_path):
    """In a fresh process: the peak while loading, above what building the same model needs, is far below
    the weights' size (the data are read in chunks straight into the model)."""
    script = textwrap.dedent("""
        import gc, json, sys, tracemalloc
        import fastnn as fnn
        from fastnn import io as fio
        path = sys.argv[1]
        layers = lambda: [fnn.Dense(1024, 1024), fnn.Dense(1024, 512)]
        fnn.Sequential(layers(), dtype="float64", seed=0).save(path)
        gc.collect()
        tracemalloc.start()
        def peak(fn):
            gc.collect(); tracemalloc.reset_peak(); before = tracemalloc.get_traced_memory()[0]
            out = fn()
            return out, tracemalloc.get_traced_memory()[1] - before
        model, build = peak(lambda: fnn.Sequential(layers(), dtype="float64", seed=0))
        weights = sum(p.data.nbytes for p in model.parameters())
        del model
        model, load = peak(lambda: fio.load_model(path))
        print(json.dumps({"weights": weights, "build": build, "load": load}))
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "big.fnn")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["weights"] > 5 << 20
    assert m["load"] <= m["build"] + 0.1 * m["weights"], m


# ------------------------------------------------------------------------------------------------ item 6: scalars

SCALARS = [
    (lambda h, a: h["model"].update(step=-1), r"header field model\.step must be an integer in \[0, 2\*\*63\), got -1"),
    (lambda h, a: h["model"].update(step=10 ** 30), r"model\.step must be an integer in \[0, 2\*\*63\)"),
    (lambda h, a: h["model"].update(epoch=-3), r"model\.epoch must be an integer in \[0, 2\*\*63\), got -3"),
    (lambda h, a: h["model"].update(epoch=2 ** 63), r"model\.epoch must be an integer"),
    (lambda h, a: h["model"].update(seed=2 ** 64), r"model\.seed must be an integer in \[0, 2\*\*64\)"),
    (lambda h, a: h["model"].update(step=1.0), r"model\.step must be an integer, got 1\.0"),
    (lambda h, a: a.update({"optimizer/state/0/step": np.array(-1, np.int64)}),
     r"array 'optimizer/state/0/step' must be a whole number in \[0, 2\*\*53\], got array\(-1\)"),
    (lambda h, a: a.update({"optimizer/state/1/step": np.array(1e30)}),
     r"array 'optimizer/state/1/step' must be a whole number"),
    (lambda h, a: a.update({"optimizer/state/0/step": np.array(np.nan, np.float32)}),
     r"array 'optimizer/state/0/step' must be a whole number"),
    (lambda h, a: a.update({"optimizer/state/0/step": np.array(2.5)}),
     r"array 'optimizer/state/0/step' must be a whole number"),
    (lambda h, a: h["training"]["optimizer"]["param_groups"][0].update(betas=[1.0, 0.9]),
     r"header field training\.optimizer\.param_groups\[0\]: betas\[0\] must be a finite number in \[0, 1\), "
     r"got 1\.0"),
    (lambda h, a: h["training"]["optimizer"]["param_groups"][0].update(lr=float("nan")),
     r"training\.optimizer\.param_groups\[0\]: lr must be a finite number in \[0, inf\), got nan"),
    (lambda h, a: h["training"]["optimizer"]["param_groups"][0].update(eps=-1e-8),
     r"training\.optimizer\.param_groups\[0\]: eps must be"),
    (lambda h, a: h["training"]["optimizer"]["param_groups"][0].update(amsgrad=1),
     r"training\.optimizer\.param_groups\[0\]: amsgrad must be a bool"),
    (lambda h, a: h["training"]["optimizer"]["defaults"].update(weight_decay=float("inf")),
     r"header field training\.optimizer\.defaults: weight_decay must be"),
]


@pytest.mark.parametrize("mutate, match", SCALARS, ids=range(len(SCALARS)))
def test_out_of_range_scalars_are_refused_naming_the_file_and_the_field(tmp_path, mutate, match):
    _, path = _trained(tmp_path)
    _load_error(_rewrite(path, tmp_path / "bad.fnn", mutate), match)


def test_a_file_with_step_minus_one_no_longer_loads_and_crashes_later(tmp_path):
    """The reported sequence: step = -1 loaded, then train_step divided by zero (1 - beta1**0)."""
    _, path = _trained(tmp_path)

    def minus_one(h, a):
        for name in a:
            if name.endswith("/step"):
                a[name] = np.array(-1.0, np.float32)

    _load_error(_rewrite(path, tmp_path / "bad.fnn", minus_one), r"optimizer/state/\d+/step' must be a whole number")


def test_large_but_valid_counters_load_and_train(tmp_path):
    model, path = _trained(tmp_path)

    def big(h, a):
        h["model"].update(step=2 ** 62, epoch=2 ** 40, seed=2 ** 64 - 1)
        for name in a:
            if name.endswith("/step"):
                a[name] = np.array(2 ** 24, np.float32)

    back = fio.load_model(_rewrite(path, tmp_path / "big.fnn", big))
    assert (back._step, back.epoch, back.seed) == (2 ** 62, 2 ** 40, 2 ** 64 - 1)
    rng = np.random.default_rng(1)
    back.train_step(rng.standard_normal((8, 5)), rng.integers(0, 3, 8))
    assert all(np.isfinite(p.data).all() for p in back.parameters())


# ------------------------------------------------------------------------------------------------ item 6: temporaries

CHILD = textwrap.dedent("""
    import sys, time
    import fastnn as fnn
    from fastnn import io as fio
    real = fio._write_npz
    def slow(f, arrays):          # the real writer, then a long pause before the rename: killed here
        real(f, arrays)
        f.flush()
        print("written", flush=True)
        time.sleep(120)
    fio._write_npz = slow
    fnn.Sequential([fnn.Dense(1024, 1024)], dtype="float64", seed=0).save(sys.argv[1])
""")


def _writer(path):
    """A process saving a large model to `path`, paused after writing its temporary file; returns it."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout.readline().strip() == "written", "the writer did not get to its temporary file"
    finally:
        watchdog.cancel()
    return proc


def _temporaries(directory, pid=None):
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp") and (pid is None or f".{pid}." in n))


def test_temporaries_of_killed_writers_are_removed_by_the_next_save_and_live_ones_kept(tmp_path):
    target = tmp_path / "m.fnn"
    killed = _writer(target)
    live = _writer(target)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)                      # reaped: its pid no longer exists
        left = _temporaries(tmp_path, killed.pid)
        assert len(left) == 1 and (tmp_path / left[0]).stat().st_size > 8 << 20   # the kill left it behind
        assert len(_temporaries(tmp_path, live.pid)) == 1
        other = tmp_path / f".other.fnn.{fio._host()}.{killed.pid}.abcdefgh.tmp"   # another target's: not ours
        other.write_bytes(b"x")
        legacy = tmp_path / ".m.fnn.k3j2h1g0.tmp"     # no writer recorded in the name: left alone
        legacy.write_bytes(b"x")

        model = fnn.Sequential([fnn.Dense(3, 2)], seed=1)
        model.save(target)                           # another process: removes the dead writer's file only
        assert _temporaries(tmp_path, killed.pid) == [other.name]
        assert len(_temporaries(tmp_path, live.pid)) == 1 and legacy.exists()
        assert fio.load_model(target).seed == 1
    finally:
        live.kill()
        live.wait(timeout=30)
    model.save(target)                               # the second writer is gone now too
    assert _temporaries(tmp_path) == sorted([other.name, legacy.name])


def test_temporary_file_names_record_the_writer(tmp_path, monkeypatch):
    seen = []
    real = fio._write_npz

    def spy(f, arrays):
        seen.append(os.path.basename(f.name))
        real(f, arrays)

    monkeypatch.setattr(fio, "_write_npz", spy)
    fnn.Sequential([fnn.Dense(3, 2)], seed=1).save(tmp_path / "m.fnn")
    host, pid, rand = seen[0][len(".m.fnn."):-len(".tmp")].split(".")
    assert (host, int(pid)) == (fio._host(), os.getpid()) and rand
    assert os.listdir(tmp_path) == ["m.fnn"]


# ------------------------------------------------------------------------------------------------ item 6: paths

class _BytesPath:
    def __init__(self, raw):
        self.raw = raw

    def __fspath__(self):
        return self.raw


def test_invalid_paths_raise_naming_path(tmp_path):
    model = fnn.Sequential([fnn.Dense(3, 2)], seed=1)
    cases = [
        ("a\0b.fnn", ValueError, r"path must not contain a NUL character, got 'a\\x00b\.fnn'"),
        (_BytesPath(b"a\0b.fnn"), ValueError, r"path must not contain a NUL character"),
        (None, TypeError, r"path must be a str or os\.PathLike, got NoneType"),
        (b"a\0b.fnn", TypeError, r"path must be a str or os\.PathLike, got bytes"),
        (tmp_path, ValueError, r"path must name a model file, got .*, which is a directory"),
        (str(tmp_path) + "/", ValueError, r"which is a directory"),
        ("", ValueError, r"path must not be empty"),
    ]
    for bad, exc, match in cases:
        with pytest.raises(exc, match=match):
            model.save(bad)
        with pytest.raises(exc, match=match):
            fio.save_model(model, bad)
        with pytest.raises(exc, match=match):
            fio.load_model(bad)
    assert os.listdir(tmp_path) == []
    model.save(_BytesPath(os.fsencode(tmp_path / "ok.fnn")))
    assert fio.load_model(tmp_path / "ok.fnn").seed == 1
