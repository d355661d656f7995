"""fit's progress display: the verbose=1 bar on stderr, fitting the terminal's width with the
validation metrics still visible at 80 columns; the verbose=2 lines on stdout (as Keras)."""

import io
import re

import numpy as np
import pytest

import fastnn
from fastnn.callbacks import ProgressBar

pytest.importorskip("tqdm")

_r = np.random.default_rng(0)
_X = _r.standard_normal((240, 5)).astype(np.float32)
_Y = (_X[:, 0] + 0.3 * _X[:, 1] > 0).astype(np.int64)


def _fit(epochs=3, **kw):
    model = fastnn.Sequential(fastnn.Dense(5, 16, activation="relu"), fastnn.Dense(16, 2), seed=0)
    model.compile("adam", "cross_entropy", ["accuracy"])
    return model.fit(_X, _Y, epochs=epochs, batch_size=8, validation_split=0.25, **kw)


def _drawn(text):
    """Every line the bar drew (tqdm redraws with carriage returns), without its padding."""
    return [line.rstrip() for line in re.split(r"[\r\n]", text) if line.strip()]


def _epoch_lines(text, epochs):
    """The last line drawn for each epoch: the one left on the screen."""
    lines = _drawn(text)
    return [[line for line in lines if line.startswith(f"Epoch {e + 1}/{epochs} ")][-1] for e in range(epochs)]


def _shown(history, key, epoch):
    return f"{key}: {float(history.history[key][epoch]):.4f}"


def test_verbose_1_bar_goes_to_stderr_and_verbose_2_lines_to_stdout(capsys):
    _fit(verbose=1)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Epoch 3/3" in captured.err and "val_accuracy: " in captured.err
    _fit(verbose=2)
    captured = capsys.readouterr()
    assert captured.err == ""
    assert [line.split(" - ")[0] for line in captured.out.splitlines()] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]


@pytest.mark.parametrize("epochs", [3, 12])
def test_at_80_columns_every_epoch_line_shows_the_validation_metrics(epochs):
    buf = io.StringIO()
    history = _fit(epochs=epochs, verbose=1, callbacks=[ProgressBar(file=buf, ncols=80)])
    assert all(len(line) <= 80 for line in _drawn(buf.getvalue()))
    for e, line in enumerate(_epoch_lines(buf.getvalue(), epochs)):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert _shown(history, key, e) in line, line
        assert "step/s" not in line   # the rate is never drawn


def test_columns_80_in_the_environment_is_followed(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")   # as shutil.get_terminal_size, $COLUMNS first (less one, as tqdm)
    buf = io.StringIO()
    history = _fit(epochs=3, verbose=1, callbacks=[ProgressBar(file=buf)])
    assert all(len(line) <= 79 for line in _drawn(buf.getvalue()))
    last = _epoch_lines(buf.getvalue(), 3)[-1]
    assert _shown(history, "val_loss", 2) in last and _shown(history, "val_accuracy", 2) in last


def test_a_wide_terminal_gets_the_bar_the_counter_and_keras_separators():
    buf = io.StringIO()
    history = _fit(epochs=2, verbose=1, callbacks=[ProgressBar(file=buf, ncols=200)])
    last = _epoch_lines(buf.getvalue(), 2)[-1]
    assert re.match(r"Epoch 2/2 100%\|[^|]{10,}\| 23/23 \[\d\d:\d\d<\d\d:\d\d\] loss: ", last), last
    assert " - ".join(_shown(history, k, 1) for k in ("loss", "accuracy", "val_loss", "val_accuracy")) in last


def test_narrower_layouts_drop_the_timing_then_the_bar_before_the_metrics():
    # the full line is 120 columns with a 10-column bar; each layout below is the richest that fits
    for ncols, pattern in ((120, r"Epoch 2/2 100%\|#{10}\| 23/23 \[\d\d:\d\d<\d\d:\d\d\] loss: "),
                           (115, r"Epoch 2/2 100%\|#{10,}\| 23/23 loss: "),
                           (95, r"Epoch 2/2 23/23 loss: \S+ - accuracy: "),
                           (85, r"Epoch 2/2 23/23 loss: \S+ accuracy: "),
                           (80, r"Epoch 2/2 loss: \S+ accuracy: \S+ val_loss: \S+ val_accuracy: \S+$")):
        buf = io.StringIO()
        _fit(epochs=2, verbose=1, callbacks=[ProgressBar(file=buf, ncols=ncols)])
        last = _epoch_lines(buf.getvalue(), 2)[-1]
        assert re.match(pattern, last), (ncols, last)
        assert len(last) <= ncols


def test_without_a_width_the_full_layout_is_drawn(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    buf = io.StringIO()   # no terminal: nothing to fit
    _fit(epochs=1, verbose=1, callbacks=[ProgressBar(file=buf)])
    assert re.match(r"Epoch 1/1 100%\|#{10}\| 23/23 \[", _epoch_lines(buf.getvalue(), 1)[0])


def test_ncols_is_checked():
    with pytest.raises(ValueError, match="ncols"):
        ProgressBar(ncols=0)
