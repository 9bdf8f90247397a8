"""LeNet and FCLeNet: parameter counts, padding, and the fully convolutional invariant."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlimaging.models import FCLeNet, LeNet, create_model


def _trained_like_lenet(seed: int = 0, **kwargs) -> LeNet:
    """A LeNet with weights moved away from their initialisation by a few SGD steps."""
    torch.manual_seed(seed)
    model = LeNet(**kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(seed)
    c = model.in_channels
    for _ in range(3):
        x = torch.rand(8, c, 32, 32, generator=g)
        y = torch.randint(0, model.num_classes, (8,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def test_parameter_count_per_layer():
    model = LeNet()
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in model.named_children()}
    assert counts == {"conv1": 156, "pool1": 0, "conv2": 2416, "pool2": 0, "fc1": 48120, "fc2": 10164, "fc3": 850}
    assert sum(counts.values()) == 61706
    assert sum(p.numel() for p in FCLeNet().parameters()) == 61706


def test_28x28_is_centre_padded_to_32x32():
    model = LeNet().eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), model(F.pad(x, (2, 2, 2, 2))))
        odd = torch.rand(2, 1, 27, 30)  # odd difference: the extra row goes to the bottom
        assert torch.equal(model(odd), model(F.pad(odd, (1, 1, 2, 3))))


def test_padding_errors():
    with pytest.raises(ValueError, match="pad_input=False"):
        LeNet(pad_input=False)(torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match="at most 32"):
        LeNet()(torch.rand(1, 1, 33, 32))
    assert LeNet(pad_input=False)(torch.rand(1, 1, 32, 32)).shape == (1, 10)


def test_fc_lenet_equals_lenet_on_32x32():
    lenet = _trained_like_lenet()
    fcn = FCLeNet.from_lenet(lenet).eval()
    x = torch.rand(5, 1, 32, 32)
    with torch.no_grad():
        dense = fcn(x)
        ref = lenet(x)
    assert dense.shape == (5, 10, 1, 1)
    assert torch.allclose(dense[:, :, 0, 0], ref, rtol=0, atol=1e-5)


def test_fc_lenet_equals_lenet_float64_tight():
    lenet = _trained_like_lenet(seed=1).double()
    fcn = FCLeNet.from_lenet(lenet).eval()
    assert fcn.fc1.weight.dtype == torch.float64
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(fcn(x).flatten(1), lenet(x), rtol=0, atol=1e-12)


def _sliding_lenet(lenet: LeNet, x: torch.Tensor) -> torch.Tensor:
    """LeNet applied to every 32 x 32 crop of x at stride 4, as a (B, K, h, w) map."""
    crops = x.unfold(2, 32, 4).unfold(3, 32, 4)  # (B, C, h, w, 32, 32)
    b, c, h, w = crops.shape[:4]
    flat = crops.permute(0, 2, 3, 1, 4, 5).reshape(b * h * w, c, 32, 32)
    return lenet(flat).reshape(b, h, w, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize("size, expected", [((64, 64), (9, 9)), ((45, 38), (4, 2))])
def test_fc_lenet_is_lenet_slid_with_stride_4(size, expected):
    """The real invariant: entry (i, j) of the map is LeNet on the crop at (4i, 4j)."""
    lenet = _trained_like_lenet(seed=2)
    fcn = FCLeNet.from_lenet(lenet).eval()
    x = torch.rand(2, 1, *size)
    with torch.no_grad():
        dense = fcn(x)
        ref = _sliding_lenet(lenet, x)
    assert dense.shape == (2, 10, *expected)
    assert ref.shape == dense.shape
    assert torch.allclose(dense, ref, rtol=0, atol=1e-5)


def test_output_size_formula():
    fcn = FCLeNet().eval()
    with torch.no_grad():
        for h in range(32, 50):
            assert fcn(torch.zeros(1, 1, h, 32)).shape[2] == (h - 32) // 4 + 1


def test_from_lenet_keeps_channels_and_classes_and_copies():
    lenet = _trained_like_lenet(seed=3, in_channels=3, num_classes=4)
    fcn = FCLeNet.from_lenet(lenet)
    assert (fcn.in_channels, fcn.num_classes) == (3, 4)
    assert torch.equal(fcn.fc1.weight.reshape(120, 400), lenet.fc1.weight)
    assert torch.equal(fcn.fc3.weight.reshape(4, 84), lenet.fc3.weight)
    before = fcn.fc1.weight.detach().clone()
    with torch.no_grad():
        lenet.fc1.weight.add_(1.0)  # the copy does not share storage
    assert torch.equal(fcn.fc1.weight, before)


def test_fc_lenet_errors():
    with pytest.raises(ValueError, match="at least 32"):
        FCLeNet()(torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match="LeNet"):
        FCLeNet.from_lenet(torch.nn.Linear(2, 2))


def test_registry_builds_lenets():
    assert isinstance(create_model("lenet", pad_input=False), LeNet)
    assert not create_model("lenet", pad_input=False).pad_input
    assert isinstance(create_model("fc_lenet"), FCLeNet)
