"""Image data: built-in digits, NPZ files and image folders, and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from govssl.data import load
from govssl.errors import DataError
from govssl.plan import AuditPlan


def _plan(dataset: dict, seed: int = 0) -> AuditPlan:
    return AuditPlan.model_validate({"name": "images", "seed": seed, "dataset": dataset,
                                     "training": {"pretrain": {"method": "rotation"}}, "checks": {}})


def test_load__digits_scaled_stratified_and_reproducible():
    from sklearn.datasets import load_digits

    data = load(_plan({"builtin": "digits"}))
    assert data.task == "image-classification" and data.classes == tuple(str(i) for i in range(10))
    assert data.X_train.shape[1:] == (1, 8, 8) and data.X_train.dtype == np.float32
    assert len(data.X_train) + len(data.X_test) == 1797
    assert float(data.X_train.min()) == 0.0 and float(data.X_train.max()) == 1.0
    # stratified: each class has ~25% of its images in the test split
    counts = np.bincount(load_digits().target, minlength=10)
    np.testing.assert_allclose(np.bincount(data.y_test, minlength=10), np.round(counts * 0.25), atol=1)
    again = load(_plan({"builtin": "digits"}))
    np.testing.assert_array_equal(again.X_test, data.X_test)
    other = load(_plan({"builtin": "digits"}, seed=1))
    assert not np.array_equal(other.y_test, data.y_test)
    assert "seed 0" in data.files[0]["split"]
    summary = data.summary()
    assert summary.task == "image-classification" and summary.sensitive == ()


def test_load__npz_images_with_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 6, 6)).astype(np.uint8)
    y = np.array([3, 7] * 20)
    np.savez(tmp_path / "imgs.npz", x=x, y=y)
    data = load(_plan({"path": str(tmp_path / "imgs.npz")}))
    assert data.classes == ("3", "7") and data.X_train.shape[1:] == (1, 6, 6)
    assert float(data.X_train.max()) <= 1.0
    assert data.files[0]["sha256"]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 5, 5))}, "array 'y' is missing"),
        ({"x": np.zeros((4, 5)), "y": np.zeros(4, dtype=int)}, "array 'x' must be numeric images"),
        ({"x": np.zeros((4, 5, 5)), "y": np.zeros(4)}, "array 'y' must be 1-D integer"),
        ({"x": np.zeros((4, 5, 5)), "y": np.zeros(3, dtype=int)}, "array 'x' has 4 images but array 'y' has 3"),
        ({"x": np.array(["a"] * 4).reshape(4, 1, 1), "y": np.zeros(4, dtype=int)}, "array 'x' must be numeric"),
    ],
)
def test_load__bad_npz_names_the_file_and_the_array(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as info:
        load(_plan({"path": str(path)}))
    assert str(path) in str(info.value)


def test_load__npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4, dtype=int))
    with pytest.raises(DataError, match="array 'x' holds Python objects, which govssl never unpickles"):
        load(_plan({"path": str(path)}))


@pytest.mark.parametrize("content", [b"garbage, not an archive", b"", b"PK\x03\x04 truncated zip"])
def test_load__a_file_that_is_not_npz_says_so(tmp_path, content):
    path = tmp_path / "images.npz"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load(_plan({"path": str(path)}))
    assert str(path) in str(info.value)
    assert "pickle" not in str(info.value)
    assert "not an NPZ file" in str(info.value) or "cannot read as NPZ" in str(info.value)


def test_load__image_folder_one_subfolder_per_class(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (5, 5), dtype=np.uint8)).save(tmp_path / "imgs" / name / f"{i}.png")
    (tmp_path / "imgs" / "dog" / "notes.txt").write_text("not an image")
    data = load(_plan({"path": str(tmp_path / "imgs")}))
    assert data.classes == ("cat", "dog") and len(data.X_train) + len(data.X_test) == 12
    assert data.X_train.shape[1:] == (1, 5, 5)
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "imgs" / "dog" / "small.png")
    with pytest.raises(DataError, match="small.png: image of shape"):
        load(_plan({"path": str(tmp_path / "imgs")}))


def test_load__image_folder_with_one_image_in_a_class_names_it(tmp_path):
    from PIL import Image

    for name, count in (("cat", 3), ("dog", 1)):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((5, 5), 40 * i, dtype=np.uint8)).save(tmp_path / "imgs" / name / f"{i}.png")
    with pytest.raises(DataError, match=r"at least 2 images.*'dog' \(1\)"):
        load(_plan({"path": str(tmp_path / "imgs")}))


def test_load__constant_npz_above_255_is_refused_not_divided_by_zero(tmp_path):
    path = tmp_path / "flat.npz"
    np.savez(path, x=np.full((40, 8, 8), 300.0), y=np.arange(40) % 2)
    with pytest.raises(DataError, match=r"flat.npz: array 'x' is one constant value"):
        load(_plan({"path": str(path)}))


def test_load__16_bit_png_is_rescaled_not_clipped(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(4):
            deep = rng.integers(0, 65536, (6, 6)).astype(np.uint16)
            Image.fromarray(deep).save(tmp_path / "imgs" / name / f"{i}.png")
    data = load(_plan({"path": str(tmp_path / "imgs")}))
    x = np.concatenate([data.X_train, data.X_test])
    assert (x >= 1.0 - 1e-6).mean() < 0.05  # clipping would put most pixels at 1.0
    assert 0.3 < x.mean() < 0.7
