"""fastnn's benchmark harness, shipped in the wheel so `fastnn bench` runs anywhere fastnn is installed.

- ``shapes``: the docs/design.md shapes, FLOP and byte accounting, each implementation's training step and forward.
- ``numpy_mlp``: the careful pure-NumPy MLP (preallocated, in-place) that is the baseline.
- ``compiled``: the optional compiled alternatives (jax.jit, torch.compile, ONNX Runtime with I/O binding),
  each checked against the NumPy step before it is timed.
- ``optim``: the optimizer-step benchmark and its in-place NumPy references.
- ``harness``: thread pools pinned and reported, GEMM peak and copy bandwidth, alternating timing.
- ``cli``: the ``fastnn bench`` command (``configure(parser)``, ``run(args)``, ``main(argv)``).
"""
