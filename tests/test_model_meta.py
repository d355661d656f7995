"""model.meta in model files: what the model is for (task, class names, feature and target columns).

Saved only when set, checked on save and on load against a fixed schema of strings and numbers and
against the model's widths; files without it load as before; fastnn.io.load_info reads it without
building the model.
"""

import io
import json
import zipfile

import numpy as np
import pytest

import fastnn
import fastnn.io as fio


def _model(n_in=4, n_out=3):
    return fastnn.Sequential(fastnn.Dense(n_in, 8, activation="relu"), fastnn.Dense(8, n_out), seed=1)


META = {"task": "classification", "classes": ["setosa", "versicolor", "virginica"],
        "features": ["a", "b", "c", "d"], "target": "species"}


def _rewrite_header(src, dst, edit):
    """Copy a model file with its JSON header changed by edit(header)."""
    with zipfile.ZipFile(src) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    raw = members["__fastnn__.npy"]
    header = json.loads(np.load(io.BytesIO(raw)).tobytes())
    edit(header)
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(header).encode(), np.uint8))
    members["__fastnn__.npy"] = buf.getvalue()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_meta_round_trips_and_load_info_reads_it(tmp_path):
    model = _model()
    model.meta = {**META, "classes": np.array(META["classes"])}   # NumPy strings are stored as plain strings
    model.save(tmp_path / "m.fnn")
    back = fastnn.load_model(tmp_path / "m.fnn")
    assert back.meta == META
    info = fio.load_info(tmp_path / "m.fnn")
    assert info["meta"] == META
    assert (info["in_features"], info["out_features"], info["dtype"]) == (4, 3, "float32")
    assert info["layers"] == ["Dense", "Dense"] and info["fastnn_version"] == fastnn.__version__


def test_numbers_as_class_names_and_regression_meta(tmp_path):
    model = _model()
    model.meta = {"task": "classification", "classes": [np.int64(2), 7, 9.5]}
    model.save(tmp_path / "c.fnn")
    assert fastnn.load_model(tmp_path / "c.fnn").meta == {"task": "classification", "classes": [2, 7, 9.5]}
    reg = _model(n_out=1)
    reg.meta = {"task": "regression", "target": "price"}
    reg.save(tmp_path / "r.fnn")
    assert fastnn.load_model(tmp_path / "r.fnn").meta == {"task": "regression", "target": "price"}
    binary = _model(n_out=1)   # a single-output binary model names its two classes
    binary.meta = {"task": "classification", "classes": ["no", "yes"]}
    binary.save(tmp_path / "b.fnn")
    assert fastnn.load_model(tmp_path / "b.fnn").meta["classes"] == ["no", "yes"]


def test_a_model_without_meta_writes_the_same_file_as_before_and_loads_with_meta_none(tmp_path):
    model = _model()
    assert model.meta is None
    model.save(tmp_path / "a.fnn")
    with zipfile.ZipFile(tmp_path / "a.fnn") as zf:
        header = json.loads(np.load(zf.open("__fastnn__.npy")).tobytes())
    assert "meta" not in header   # the format of files without meta is unchanged
    assert fastnn.load_model(tmp_path / "a.fnn").meta is None
    assert fio.load_info(tmp_path / "a.fnn")["meta"] is None


BAD_META = [
    ([1, 2], "model.meta must be None or a dict"),
    ({"task": "clustering"}, r"model.meta\['task'\] must be one of classification, regression, got 'clustering'"),
    ({"task": "classification", "owner": "me"}, "model.meta has an unknown entry 'owner'"),
    ({"task": "classification", "classes": ["a", "b"]}, r"names 2 classes, but the model has 3 outputs"),
    ({"task": "classification", "classes": ["a", "a", "b"]}, "holds a name twice"),
    ({"task": "classification", "classes": ["a", None, "b"]}, "must hold non-empty strings or finite numbers"),
    ({"task": "classification", "classes": ["a", float("inf"), "b"]}, "must hold non-empty strings or finite"),
    ({"task": "classification", "classes": ["a", True, "b"]}, "must hold non-empty strings or finite numbers"),
    ({"task": "classification", "classes": ["a", {"x": 1}, "b"]}, "must hold non-empty strings or finite"),
    ({"task": "classification", "classes": "abc"}, r"model.meta\['classes'\] must be a list"),
    ({"task": "regression", "classes": ["a", "b", "c"]}, "needs task 'classification'"),
    ({"features": ["a", "b"]}, r"names 2 features, but the model takes 4"),
    ({"features": ["a", "b", "c", 4]}, "must hold non-empty strings"),
    ({"features": ["a", "b", "c", ""]}, "must hold non-empty strings"),
    ({"target": 3}, r"model.meta\['target'\] must be a non-empty string"),
    ({"target": "x" * 1001}, r"model.meta\['target'\] must be a non-empty string"),
]


@pytest.mark.parametrize("meta,match", BAD_META, ids=[m for _, m in BAD_META])
def test_invalid_meta_is_refused_on_save_before_any_file_is_written(tmp_path, meta, match):
    model = _model()
    model.meta = meta
    with pytest.raises(ValueError, match=match):
        model.save(tmp_path / "m.fnn")
    assert not (tmp_path / "m.fnn").exists()


@pytest.mark.parametrize("meta,match", [
    ({"task": "classification", "classes": ["a", "b", {"__class__": "os.system"}]}, "must hold non-empty strings"),
    ({"task": "classification", "classes": ["a", "b", ["c"]]}, "must hold non-empty strings"),
    ({"task": "classification", "classes": ["a", "b", 1e400]}, "finite numbers"),
    ({"task": "classification", "classes": ["a", "b", 2 ** 60]}, "finite numbers"),
    ({"task": "classification", "classes": ["a", "b"]}, "names 2 classes, but the model has 3 outputs"),
    ({"features": ["a", "b", "c", "d", "e"]}, "names 5 features, but the model takes 4"),
    ({"pickle": "cos\nsystem"}, "unknown entry 'pickle'"),
    ("classification", "header field meta must be an object"),
])
def test_a_file_with_invalid_meta_is_refused_on_load(tmp_path, meta, match):
    _model().save(tmp_path / "ok.fnn")
    _rewrite_header(tmp_path / "ok.fnn", tmp_path / "bad.fnn", lambda h: h.__setitem__("meta", meta))
    for load in (fastnn.load_model, fio.load_info):
        with pytest.raises(ValueError, match=f"cannot load model file .*bad.fnn.*{match}"):
            load(tmp_path / "bad.fnn")


def test_meta_null_in_a_file_loads_as_none(tmp_path):
    _model().save(tmp_path / "ok.fnn")
    _rewrite_header(tmp_path / "ok.fnn", tmp_path / "n.fnn", lambda h: h.__setitem__("meta", None))
    assert fastnn.load_model(tmp_path / "n.fnn").meta is None


def test_load_info_checks_the_file_like_load_model(tmp_path):
    (tmp_path / "x.fnn").write_bytes(b"\x80\x04 not a model")
    with pytest.raises(ValueError, match="looks like a pickle"):
        fio.load_info(tmp_path / "x.fnn")
    with pytest.raises(FileNotFoundError):
        fio.load_info(tmp_path / "missing.fnn")
