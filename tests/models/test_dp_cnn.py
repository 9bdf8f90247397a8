"""dp_cnn: the tanh CNN with GroupNorm for DP-SGD (shapes, parameters by hand, DP compatibility)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.models import DPCNN, create_model, model_info
from mlimaging.privacy.dp import check_model, per_sample_gradients


def test_parameter_count_per_layer_by_hand():
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in DPCNN().named_children()}
    # conv 8x8 1->16: 64*16 + 16; GN(16): 2*16; conv 4x4 16->32: 16*16*32 + 32; GN(32): 2*32;
    # fc 32 channels * 4 * 4 -> 32: 512*32 + 32; fc 32 -> 10: 320 + 10
    assert counts == {"conv1": 1040, "norm1": 32, "conv2": 8224, "norm2": 64, "pool": 0, "fc1": 16416, "fc2": 330}
    assert sum(counts.values()) == 26106
    assert sum(p.numel() for p in DPCNN(norm="none").parameters()) == 26106 - 32 - 64


def test_shapes_for_other_sizes_widths_and_channels():
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model = create_model("dp_cnn", in_channels=3, num_classes=4, width=8, hidden=16, input_size=32, seed=0)
    assert model(x).shape == (3, 4)
    # 32 px: conv1 -> 16, pool -> 15, conv2 -> 6, pool -> 5: fc1 takes 16 * 5 * 5
    assert model.fc1.in_features == 16 * 5 * 5
    assert model_info("dp_cnn").input_shape == (1, 28, 28)
    assert create_model("dp_cnn", input_size=14)(torch.rand(1, 1, 14, 14)).shape == (1, 10)


def test_no_batchnorm_so_dp_sgd_accepts_it_and_per_sample_gradients_are_independent():
    model = create_model("dp_cnn", seed=0)
    check_model(model)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(4, 1, 28, 28, generator=g), torch.tensor([0, 1, 2, 3])
    grads = per_sample_gradients(model, torch.nn.CrossEntropyLoss(), x, y)
    alone = per_sample_gradients(model, torch.nn.CrossEntropyLoss(), x[:1], y[:1])
    for k in alone:  # GroupNorm uses each image's own statistics: sample 0's gradient ignores the others
        torch.testing.assert_close(grads[k][:1], alone[k], atol=1e-6, rtol=1e-5)


def test_standardisation_uses_the_given_constants():
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    a = create_model("dp_cnn", seed=0).eval()
    b = create_model("dp_cnn", mean=0.0, std=1.0, seed=0).eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b((x - 0.1307) / 0.3081))
    assert torch.equal(a.state_dict()["std"], torch.full((1, 1, 1, 1), 0.3081))  # saved with the weights
    c = create_model("dp_cnn", in_channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.25))
    assert c.mean.flatten().tolist() == pytest.approx([0.5, 0.4, 0.3])


def test_seeded_weights_match_the_sequential_definition():
    """The registry model with seed 0 has the weights of the same network built layer by layer after
    torch.manual_seed(0) (the benchmark's original definition), so its results stay comparable."""
    from torch import nn

    torch.manual_seed(0)
    ref = nn.Sequential(nn.Conv2d(1, 16, 8, 2, padding=3), nn.GroupNorm(4, 16), nn.Conv2d(16, 32, 4, 2),
                        nn.GroupNorm(4, 32), nn.Linear(512, 32), nn.Linear(32, 10))
    model = create_model("dp_cnn", seed=0)
    for p, q in zip(ref.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(("kwargs", "match"), [({"norm": "batch"}, "norm"), ({"width": 6}, "groups"),
                                               ({"input_size": 12}, "input_size"), ({"std": 0.0}, "std"),
                                               ({"mean": (0.1, 0.2)}, "mean"), ({"hidden": 0}, "hidden")])
def test_bad_options_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DPCNN(**kwargs)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 40).filter(lambda s: s != 28))
def test_wrong_input_size_is_a_value_error(side):
    with pytest.raises(ValueError, match="shape"):
        DPCNN()(torch.zeros(1, 1, side, side))
