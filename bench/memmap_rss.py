"""Peak memory and time of fit / predict / evaluate on a memory-mapped .npy larger than fastnn should hold.

    python bench/memmap_rss.py                          # 1,000,000 x 512 float64 (4.1 GB) in /tmp, then deleted
    python bench/memmap_rss.py --rows 50000 --keep      # smaller; keep the files for another run
    python bench/memmap_rss.py --in-memory              # also on the data in memory (float64; float32)
    python bench/memmap_rss.py --alternate 3            # epoch time, memory-mapped vs in memory, alternating

Each measurement runs in a fresh subprocess (python -c ... of this file's `_worker`), which reports
its peak resident set (getrusage ru_maxrss, which on Linux also counts the parent's resident set at
the fork, and /proc/self/status VmHWM, this process's own), its resident set just
before the call (after imports, the model and np.load), and the call's wall time. Model: features-64-10
(ReLU), float32, Adam, cross-entropy, batch 256, shuffle on, one epoch, threads as fastnn's default.
Prints a Markdown table (bench/README.md, "Data larger than memory").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

_WORKER = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import numpy as np
import fastnn
from fastnn import _datasource
from fastnn.layers import Dense

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return -1

what, mode, xp, yp = {args!r}
mmap = None if mode == "memory" else "r"
X = np.load(xp, mmap_mode=mmap)
y = np.load(yp, mmap_mode=mmap)
if mode == "memory-f32":   # already in the model's dtype (fit converts nothing), read without a float64 copy
    mapped = np.load(xp, mmap_mode="r")
    X = np.empty(mapped.shape, np.float32)
    _datasource.MappedRows(mapped, np.float32, "X").read((0, len(X)), X)
model = fastnn.Sequential([Dense(X.shape[1], 64, activation="relu"), Dense(64, 10)], dtype="float32", seed=0)
model.compile("adam", "cross_entropy", metrics=["accuracy"])
before = status("VmRSS")
t = time.perf_counter()
if what == "fit":
    model.fit(X, y, epochs=1, batch_size=256, shuffle=True, verbose=0)
elif what == "scan":
    _datasource.MappedRows(X, np.float32, "X").scan()
elif what == "predict":
    model.predict(X, batch_size=1024)
elif what == "evaluate":
    model.evaluate(X, y, batch_size=1024)
seconds = time.perf_counter() - t
print(json.dumps(dict(before=before, maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      hwm=status("VmHWM"), seconds=seconds)))
"""


_ALTERNATE = """
import json, sys, time
sys.path.insert(0, {root!r})
import numpy as np
import fastnn
from fastnn import _datasource
from fastnn.layers import Dense

xp, yp, rounds = {args!r}
mapped = np.load(xp, mmap_mode="r")
y = np.load(yp)
x32 = np.empty(mapped.shape, np.float32)   # the same data in memory, in the model's dtype (read without a copy)
_datasource.MappedRows(mapped, np.float32, "X").read((0, len(x32)), x32)
read = _datasource.MappedRows.read
spent = [0.0]

def timed(self, *a, **k):
    t = time.perf_counter()
    out = read(self, *a, **k)
    spent[0] += time.perf_counter() - t
    return out

_datasource.MappedRows.read = timed
times = dict(mmap=[], memory=[], reading=[], scan=[])
for r in range(rounds):
    for mode, X in (("mmap", mapped), ("memory", x32)):
        model = fastnn.Sequential([Dense(X.shape[1], 64, activation="relu"), Dense(64, 10)], dtype="float32", seed=0)
        model.compile("adam", "cross_entropy", metrics=["accuracy"])
        if mode == "mmap":
            t = time.perf_counter()
            X = _datasource.MappedRows(X, np.float32, "X")
            X.scan()
            times["scan"].append(time.perf_counter() - t)
            X = mapped
            model.fit(X[:1000], y[:1000], epochs=1, batch_size=256, verbose=0)   # warm-up: plans
        spent[0] = 0.0
        t = time.perf_counter()
        model.fit(X, y, epochs=1, batch_size=256, shuffle=True, verbose=0)
        times[mode].append(time.perf_counter() - t)
        if mode == "mmap":
            times["reading"].append(spent[0])
print(json.dumps(times))
"""


def _make(path_x, path_y, rows, cols, seed=0):
    x = np.lib.format.open_memmap(path_x, mode="w+", dtype=np.float64, shape=(rows, cols))
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((cols, 10))
    labels = np.empty(rows, np.int64)
    step = max(1, (64 << 20) // (cols * 8))
    for s in range(0, rows, step):
        e = min(s + step, rows)
        block = rng.standard_normal((e - s, cols))
        x[s:e] = block
        labels[s:e] = (block @ w).argmax(axis=1)
    x.flush()
    del x
    np.save(path_y, labels)


def _alternate(path_x, path_y, rounds, timeout):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = _ALTERNATE.format(root=root, args=(path_x, path_y, rounds))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run(what, mode, path_x, path_y, timeout):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = _WORKER.format(root=root, args=(what, mode, path_x, path_y))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--cols", type=int, default=512)
    p.add_argument("--dir", default="/tmp")
    p.add_argument("--keep", action="store_true", help="keep the .npy files (default: delete them)")
    p.add_argument("--in-memory", action="store_true",
                   help="also run on the data loaded in memory (as float64, and converted to float32 beforehand)")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--alternate", type=int, default=0, metavar="ROUNDS",
                   help="also time fit epochs memory-mapped and in memory (float32) alternately in one process")
    args = p.parse_args(argv)
    px = os.path.join(args.dir, f"fastnn_mm_X_{args.rows}x{args.cols}.npy")
    py = os.path.join(args.dir, f"fastnn_mm_y_{args.rows}.npy")
    if not (os.path.exists(px) and os.path.exists(py)):
        t = time.perf_counter()   # in a child, so that this process stays small (ru_maxrss survives fork + exec)
        root = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r}); import memmap_rss; "
                        f"memmap_rss._make({px!r}, {py!r}, {args.rows}, {args.cols})"], check=True)
        print(f"wrote {px} ({os.path.getsize(px) / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s", flush=True)
    size = os.path.getsize(px)
    modes = ["mmap"] + (["memory", "memory-f32"] if args.in_memory else [])
    print(f"\nX: {args.rows} x {args.cols} float64, {size / 1e9:.2f} GB ({size / 2**20:.0f} MiB); "
          f"model {args.cols}-64-10 float32, batch 256\n")
    print("| call | X | wall time (s) | RSS before (MiB) | peak RSS ru_maxrss (MiB) | VmHWM (MiB) | growth (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    try:
        for what in ("scan", "fit", "predict", "evaluate"):
            for mode in modes[:1] if what == "scan" else modes:
                r = _run(what, mode, px, py, args.timeout)
                mib = 2 ** 20
                label = {"mmap": "memory-mapped float64", "memory": "in memory, float64",
                         "memory-f32": "in memory, float32"}[mode]
                print(f"| {what} | {label} | {r['seconds']:.2f} | "
                      f"{r['before'] / mib:.0f} | {r['maxrss'] / mib:.0f} | {r['hwm'] / mib:.0f} | "
                      f"{(r['hwm'] - r['before']) / mib:.0f} |", flush=True)
        if args.alternate:
            r = _alternate(px, py, args.alternate, args.timeout)
            med = {k: float(np.median(v)) for k, v in r.items()}
            print(f"\nOne epoch of fit, {args.alternate} alternating rounds in one process, median (min) s: "
                  f"memory-mapped {med['mmap']:.2f} ({min(r['mmap']):.2f}), of which reading rows "
                  f"{med['reading']:.2f}; in memory float32 {med['memory']:.2f} ({min(r['memory']):.2f}); "
                  f"ratio {med['mmap'] / med['memory']:.2f}. The finite scan before fit: {med['scan']:.2f} s "
                  f"({min(r['scan']):.2f}). All: {json.dumps(r)}", flush=True)
    finally:
        if not args.keep:
            os.remove(px)
            os.remove(py)
    return 0


if __name__ == "__main__":
    sys.exit(main())
