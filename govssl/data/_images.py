"""Image datasets: the built-in digits, an NPZ file (arrays ``x`` and ``y``) or a folder of
PNG/JPEG images with one sub-folder per class.

Images become float32 arrays of shape (N, C, H, W) scaled to [0, 1]. Nothing is unpickled: NPZ
files are read with ``allow_pickle=False``. Before an NPZ array is loaded, the shape and dtype its
.npy header declares are checked against the member's size in the archive and against
``MAX_NPZ_VALUES``, so a small file cannot make govssl allocate what its header claims.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from pathlib import Path

import numpy as np

from govssl.errors import DataError

__all__ = ["load_digits_arrays", "load_npz", "load_image_folder", "IMAGE_SUFFIXES", "DIGITS_SOURCE",
           "MAX_NPZ_VALUES"]

MAX_NPZ_VALUES = 250_000_000  # values in one array: 1 GB once converted to float32

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

DIGITS_SOURCE = {
    "name": "digits",
    "source": "UCI ML hand-written digits (optical recognition), as shipped by scikit-learn (load_digits)",
    "license": "CC-BY-4.0",
    "citation": "Alpaydin, E. & Kaynak, C. (1998). Optical Recognition of Handwritten Digits. "
    "UCI Machine Learning Repository. doi:10.24432/C50P49",
}


def _digest(x: np.ndarray, y: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes() + np.ascontiguousarray(y).tobytes()).hexdigest()


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """scikit-learn's 1,797 8x8 digits, pixels 0..16 scaled to [0, 1], shape (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    classes = [str(c) for c in bunch.target_names]
    return x, y, classes, {"path": "sklearn.datasets.load_digits", "sha256": _digest(x, y), "size": int(x.nbytes)}


def load_npz(path: Path, require_labels: bool = True) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """An NPZ file with ``x`` (N, H, W) or (N, C, H, W) numeric and ``y`` (N,) integer labels."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if magic != b"PK\x03\x04":  # an NPZ file is a zip archive of .npy arrays
        raise DataError(f"{path}: not an NPZ file (a zip archive of .npy arrays 'x' and 'y', as numpy.savez writes)")
    _check_npz_headers(path)
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                try:
                    arrays[key] = archive[key]
                except ValueError as exc:
                    if "allow_pickle" in str(exc):
                        raise DataError(f"{path}: array '{key}' holds Python objects, which govssl never "
                                        "unpickles; save numeric arrays") from None
                    raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
        raise DataError(f"{path}: cannot read as NPZ (arrays 'x' and 'y'): {exc}") from None
    if not require_labels and "y" not in arrays and "x" in arrays:
        arrays["y"] = np.zeros(len(arrays["x"]), dtype=np.int64)
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: array '{key}' is missing; found {', '.join(sorted(arrays)) or 'none'}")
    x, y = arrays["x"], arrays["y"]
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)) or x.ndim not in (3, 4):
        raise DataError(f"{path}: array 'x' must be numeric images (N, H, W) or (N, C, H, W); got {x.dtype} {x.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise DataError(f"{path}: array 'y' must be 1-D integer class labels; got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{path}: array 'x' has {len(x)} images but array 'y' has {len(y)} labels")
    if x.ndim == 3:
        x = x[:, None]
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: array 'x' holds NaN or infinite values")
    if x.size and x.max() > 1.0:
        if x.max() <= 255:
            x = x / 255.0
        elif x.max() == x.min():
            raise DataError(f"{path}: array 'x' is one constant value ({x.max():g}); there is nothing to learn")
        else:
            x = (x - x.min()) / (x.max() - x.min())
    classes = sorted(np.unique(y).tolist())
    y = np.searchsorted(classes, y).astype(np.int64)
    return x, y, [str(c) for c in classes], {"path": str(path), "sha256": _file_sha256(path), "size": path.stat().st_size}


def _check_npz_headers(path: Path) -> None:
    """Read each .npy member's header (shape, dtype) without loading its data; refuse a member
    whose declared size is not what the archive holds, that holds Python objects, or that is
    larger than MAX_NPZ_VALUES."""
    from numpy.lib import format as npy

    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[: -len(".npy")]
                with archive.open(info) as member:
                    version = npy.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = npy.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _, dtype = npy.read_array_header_2_0(member)
                    else:
                        raise DataError(f"{path}: array '{key}' uses .npy format version {version[0]}.{version[1]}; "
                                        "save it with numpy.savez (format 1.0 or 2.0)")
                    header = member.tell()
                if dtype.hasobject:
                    raise DataError(f"{path}: array '{key}' holds Python objects, which govssl never "
                                    "unpickles; save numeric arrays")
                values = int(np.prod(shape, dtype=object)) if shape else 1
                declared = values * dtype.itemsize
                if header + declared != info.file_size:
                    raise DataError(
                        f"{path}: array '{key}' declares shape {shape} of {dtype} ({declared:,} bytes) but the "
                        f"archive holds {max(info.file_size - header, 0):,} bytes for it; the file is corrupt"
                    )
                if values > MAX_NPZ_VALUES:
                    raise DataError(f"{path}: array '{key}' has {values:,} values (shape {shape}); at most "
                                    f"{MAX_NPZ_VALUES:,} are loaded")
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise DataError(f"{path}: cannot read as NPZ (arrays 'x' and 'y'): {exc}") from None


def _file_sha256(path: Path) -> str:
    from govssl.records import sha256_file

    return sha256_file(path)


def load_image_folder(path: Path) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """``path/<class>/*.png|jpg``: grayscale if every image is, all images of one size."""
    try:
        return _load_image_folder(path)
    except OSError as exc:  # a folder that cannot be listed; an image that cannot be read says which
        where = exc.filename or path
        raise DataError(f"{where}: cannot read: {exc.strerror or exc}") from None


def _load_image_folder(path: Path) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(f"{path}: an image folder needs one sub-folder per class (at least 2); found {len(classes)}")
    images, labels, digest, size = [], [], hashlib.sha256(), None
    for label, name in enumerate(classes):
        files = sorted(f for f in (path / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{path / name}: no PNG or JPEG images in this class folder")
        for f in files:
            try:
                with Image.open(f) as im:
                    im.load()
                    if im.mode.startswith("I"):  # 16/32-bit greyscale: rescale, PIL's convert("L") clips at 255
                        deep = np.asarray(im, dtype=np.float64)
                        arr = deep * (255.0 / (65535.0 if deep.max(initial=0) <= 65535 else 2.0**31 - 1))
                    else:
                        arr = np.asarray(im.convert("L" if im.mode in ("1", "L") else "RGB"))
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"{f}: cannot read as an image: {exc}") from None
            if size is None:
                size = arr.shape
            elif arr.shape != size:
                raise DataError(f"{f}: image of shape {arr.shape}, but the first image has {size}; resize them to one size")
            digest.update(f.read_bytes())
            images.append(arr)
            labels.append(label)
    x = np.stack(images).astype(np.float32) / 255.0
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    n_bytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return x, np.asarray(labels, dtype=np.int64), classes, {"path": str(path), "sha256": digest.hexdigest(), "size": n_bytes}
