"""The segmentation pipeline pieces (mlimaging.segmentation.pipeline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlimaging.data import PhantomDataset, make_phantom
from mlimaging.models import FCN, create_model
from mlimaging.segmentation.pipeline import (
    SameSizeMultiScale,
    SegmentationSamples,
    build_segmenter,
    nominal_intensities,
    otsu_labels,
    patch_dataset,
    patch_predict,
    predict_labels,
    region_growing_labels,
    threshold_labels,
    train_segmenter,
    zscore,
)


def test_zscore_has_zero_mean_unit_std_and_constant_gives_zeros():
    x = zscore(np.arange(12, dtype=np.float64).reshape(3, 4) * 7 + 3)
    assert x.dtype == torch.float32 and x.shape == (3, 4)
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(x.std(unbiased=False)) == pytest.approx(1.0, abs=1e-6)
    # By hand: [1, 2, 3] has mean 2 and population std sqrt(2/3).
    assert zscore(torch.tensor([1.0, 2.0, 3.0])).tolist() == pytest.approx([-1.224745, 0.0, 1.224745], abs=1e-5)
    assert torch.equal(zscore(np.full((4, 4), 5.0)), torch.zeros(4, 4))


def test_nominal_intensities_are_the_phantom_levels():
    lut = nominal_intensities((48, 48), n_structures=3)
    image, labels = make_phantom((48, 48), seed=5)  # another subject: same clean levels
    assert len(lut) == 4 and lut[0] < min(lut[1:])
    for k in range(4):
        assert float(image[labels == k].mean()) == pytest.approx(lut[k], abs=1e-6)


def test_classical_label_maps_recover_a_clean_phantom():
    image, labels = make_phantom((64, 64), seed=0)
    lut = nominal_intensities((64, 64))
    assert np.array_equal(threshold_labels(image, lut), labels)
    assert np.array_equal(region_growing_labels(image, labels, lut), labels)


def test_otsu_labels_on_a_slightly_noisy_phantom():
    image, labels = make_phantom((64, 64), seed=1, noise=0.02)
    lut = nominal_intensities((64, 64))
    pred = otsu_labels(image, lut)
    assert pred.shape == labels.shape and set(np.unique(pred)) <= {0, 1, 2, 3}
    assert (pred == labels).mean() > 0.9


def test_region_growing_leaves_a_structure_empty_when_no_voxel_is_in_bounds():
    image, labels = make_phantom((48, 48), seed=2)
    lut = nominal_intensities((48, 48))
    shifted = image.copy()
    shifted[labels == 3] = 10.0  # far outside every structure's bounds
    pred = region_growing_labels(shifted, labels, lut)
    assert not (pred == 3).any()
    assert np.array_equal(pred == 1, labels == 1)


def test_same_size_multiscale_is_input_sized_in_2d():
    net = SameSizeMultiScale(create_model("multiscale", num_classes=3, seed=0))
    for shape in [(40, 41), (33, 48)]:
        assert net(torch.zeros(1, 1, *shape)).shape == (1, 3, *shape)


def test_build_segmenter_gives_input_sized_logits_and_rejects_patch_cnn():
    for name in ["unet", "segnet", "deeplab", "fcn", "multiscale"]:
        net = build_segmenter(name, num_classes=4, seed=0)
        assert net(torch.zeros(1, 1, 32, 32)).shape == (1, 4, 32, 32), name
    net3d = build_segmenter("unet", num_classes=2, spatial_dims=3, seed=0, channels=4, depth=2)
    assert net3d(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)
    with pytest.raises(ValueError, match="dense networks"):
        build_segmenter("patch_cnn", num_classes=2)


def test_patch_by_patch_equals_the_dense_fcn_pass():
    patch = create_model("patch_cnn", num_classes=3, seed=0)
    fcn = FCN.from_patch_cnn(patch, pad=True)
    image, _ = make_phantom((24, 28), seed=3, noise=0.05)
    by_patch = patch_predict(patch, image, batch_size=100)
    fcn.eval()
    with torch.no_grad():
        dense = fcn(zscore(image)[None, None]).argmax(1)[0].numpy()
    assert by_patch.shape == (24, 28) and np.array_equal(by_patch, dense)


def test_patch_dataset_balances_classes_and_centres_the_label():
    image, labels = make_phantom((32, 32), seed=4)
    ds = patch_dataset([image], [labels], per_class=5, seed=0)
    x, y = ds.tensors
    assert x.shape[1:] == (1, 17, 17)
    counts = np.bincount(y.numpy())
    present = np.bincount(labels.ravel())
    assert np.array_equal(counts, np.minimum(present, 5))
    # Each patch is centred on a voxel of its label: its centre value is that voxel's z-score.
    z = zscore(image).numpy()
    for patch, k in zip(x, y, strict=True):
        centre = float(patch[0, 8, 8])
        assert np.isclose(z[labels == int(k)], centre, atol=1e-6).any()
    again = patch_dataset([image], [labels], per_class=5, seed=0)
    assert torch.equal(again.tensors[0], x)


def test_segmentation_samples_crop_pad_and_center():
    base = PhantomDataset(2, (32, 40), seed=0)
    image, mask = SegmentationSamples(base, roi_size=(16, 48), center=True)[0]
    assert image.shape == (1, 16, 48) and mask.shape == (16, 48) and mask.dtype == torch.long
    full_img, full_mask = SegmentationSamples(base)[0]
    assert torch.equal(mask[:, :40], full_mask[8:24]) and (mask[:, 40:] == 0).all()
    assert torch.allclose(image[0, :, :40], full_img[..., 8:24, :].reshape(16, 40))
    with pytest.raises(ValueError, match="roi_size"):
        SegmentationSamples(base, roi_size=(16,))[0]
    with pytest.raises(ValueError, match="foreground"):
        SegmentationSamples(base, foreground=1.5)


def test_foreground_oversampling_centres_crops_on_structures():
    base = PhantomDataset(1, (64, 64), seed=0)
    plain = SegmentationSamples(base, roi_size=(8, 8))
    fg = SegmentationSamples(base, roi_size=(8, 8), foreground=1.0)
    torch.manual_seed(0)
    plain_fg = np.mean([(plain[0][1] > 0).any().item() for _ in range(60)])
    lesion_hits = np.mean([(fg[0][1] == 3).any().item() for _ in range(60)])
    assert all((fg[0][1] > 0).any() for _ in range(20))
    assert lesion_hits > 0.2 and plain_fg <= 1.0


def test_train_and_predict_a_tiny_unet_learns_the_phantom():
    base = PhantomDataset(4, (32, 32), seed=0, noise=0.02)
    net = build_segmenter("unet", num_classes=4, seed=0)
    history = train_segmenter(net, SegmentationSamples(base), epochs=40, batch_size=4, lr=1e-2, seed=0)
    losses = history["loss"]
    assert losses[-1] < losses[0]
    image, labels = base[0]
    labels = np.asarray(labels)
    pred = predict_labels(net, image)
    windowed = predict_labels(net, image, roi_size=(16, 16))
    assert pred.shape == labels.shape and pred.dtype == np.int64 and windowed.shape == labels.shape
    assert (pred == labels).mean() > 0.8  # the majority class alone is far less
