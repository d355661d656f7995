"""fastnn's benchmark harness, shipped in the wheel so `fastnn bench` runs anywhere fastnn is installed.

- ``shapes``: the docs/design.md shapes, FLOP and byte accounting, each implementation's training step and forward.
- ``numpy_mlp``: the careful pure-NumPy MLP (preallocated, in-place) that is the baseline.
- ``optim``: the optimizer-step benchmark and its in-place NumPy references.
- ``harness``: thread pools pinned and reported, GEMM peak and copy bandwidth, alternating timing.
- ``cli``: the ``fastnn bench`` command (``configure(parser)``, ``run(args)``, ``main(argv)``).
"""
