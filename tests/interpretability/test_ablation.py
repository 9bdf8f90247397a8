"""Channel ablation: the accuracy drop when one channel of a layer is zeroed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlimaging.interpretability import ablate_channels
from mlimaging.training import evaluate


def _one_channel_model() -> nn.Module:
    """Channel 0 of the conv is x_left - x_right (the class); channels 1, 2 are distractors."""
    conv = nn.Conv2d(1, 3, (1, 2), bias=True)
    head = nn.Linear(3, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, -1.0]]], [[[0.5, 0.5]]], [[[0.0, 0.0]]]]))
        conv.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
        head.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))
        head.bias.copy_(torch.tensor([-1e-3, 0.0]))  # a zeroed channel 0 predicts class 1
    return nn.Sequential(conv, nn.Flatten(), head)


def _data(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 1, 2, generator=gen)
    y = (x[:, 0, 0, 0] <= x[:, 0, 0, 1]).long()  # class 0 when the left pixel is larger
    return x, y


# --------------------------------------------------------------------------- worked example


def test_only_the_channel_that_carries_the_class_matters():
    x, y = _data()
    res = ablate_channels(_one_channel_model(), (x, y), layer="0", batch_size=7)
    frac0 = float((y == 0).float().mean())
    assert res["layer"] == "0" and res["n"] == 40
    assert res["baseline_accuracy"] == 1.0
    np.testing.assert_array_equal(res["channels"], [0, 1, 2])
    # channel 0 zeroed: every sample is called class 1, so the class-0 samples are lost
    np.testing.assert_allclose(res["accuracy"], [1.0 - frac0, 1.0, 1.0])
    np.testing.assert_allclose(res["drop"], [frac0, 0.0, 0.0])
    assert 0.2 < frac0 < 0.8
    sub = ablate_channels(_one_channel_model(), (x, y), layer="0", channels=[2, 0])
    np.testing.assert_allclose(sub["drop"], [0.0, frac0])


# --------------------------------------------------------------------------- oracle


@pytest.fixture(scope="module")
def trained_lenet_and_digits():
    """LeNet after one epoch on 1,000 mnist5k digits, and 200 test digits."""
    from torch.utils.data import Subset

    from mlimaging.data import load_dataset
    from mlimaging.models import create_model
    from mlimaging.training import fit

    rng = np.random.default_rng(0)
    train = load_dataset("mnist5k", split="train")
    test = load_dataset("mnist5k", split="test")
    torch.manual_seed(0)
    model = create_model("lenet")
    fit(model, Subset(train, rng.permutation(len(train))[:1000].tolist()), epochs=1,
        loss=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.Adam(p, lr=3e-3),
        batch_size=50, progress=False, metrics=())
    return model.eval(), Subset(test, rng.permutation(len(test))[:200].tolist())


def test_equals_zeroing_the_channel_weights_and_evaluate(trained_lenet_and_digits):
    """Zeroing a conv's output channel = zeroing its kernel and bias; mlimaging.training.evaluate
    gives the accuracy of the edited copies."""
    lenet, data = trained_lenet_and_digits
    res = ablate_channels(lenet, data, layer="conv2", batch_size=64)
    base = evaluate(lenet, data)["accuracy"]
    assert res["baseline_accuracy"] == pytest.approx(base) and base > 0.5
    for c in range(16):
        edited = type(lenet)()
        edited.load_state_dict(lenet.state_dict())
        with torch.no_grad():
            edited.conv2.weight[c] = 0
            edited.conv2.bias[c] = 0
        assert res["accuracy"][c] == pytest.approx(evaluate(edited.eval(), data)["accuracy"])
    np.testing.assert_allclose(res["drop"], base - res["accuracy"])
    assert res["drop"].max() > 0


# --------------------------------------------------------------------------- invariants


def test_data_forms_agree_and_model_is_restored(lenet):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(30, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (30,), generator=gen)
    lenet.train()
    lenet.fc1.weight.requires_grad_(False)
    ref = ablate_channels(lenet, (x, y), layer=lenet.conv1)
    for data in (TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=8)):
        res = ablate_channels(lenet, data, layer="conv1", batch_size=11)
        np.testing.assert_allclose(res["accuracy"], ref["accuracy"])
        assert res["baseline_accuracy"] == ref["baseline_accuracy"]
    assert lenet.training and not lenet.fc1.weight.requires_grad
    assert all(len(m._forward_hooks) == 0 for m in lenet.modules())


def test_hook_removed_after_an_error():
    model = _one_channel_model()
    x, y = _data()
    with pytest.raises(ValueError, match="channels"):
        ablate_channels(model, (x, y), layer="0", channels=[5])
    with pytest.raises(ValueError, match="labels"):
        ablate_channels(model, x, layer="0")
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


# --------------------------------------------------------------------------- bad input


@settings(max_examples=20, deadline=None)
@given(name=st.text(min_size=1, max_size=6).filter(lambda s: s not in {"0", "1", "2"}))
def test_unknown_layer_lists_valid_names(name):
    with pytest.raises(ValueError, match=r"valid names: '0', '1', '2'"):
        ablate_channels(_one_channel_model(), _data(4), layer=name)


@settings(max_examples=20, deadline=None)
@given(channel=st.integers(max_value=-1) | st.integers(min_value=3, max_value=10**6))
def test_channel_out_of_range_rejected(channel):
    with pytest.raises(ValueError, match="channels"):
        ablate_channels(_one_channel_model(), _data(4), layer="0", channels=[channel])


def test_other_bad_inputs():
    model = _one_channel_model()
    with pytest.raises(ValueError, match="batch_size"):
        ablate_channels(model, _data(4), layer="0", batch_size=0)
    with pytest.raises(ValueError, match="channels"):
        ablate_channels(model, _data(4), layer="0", channels=[])
    with pytest.raises(ValueError, match="classifier"):
        ablate_channels(nn.Sequential(nn.Conv2d(1, 2, 1)), _data(4), layer="0")
    with pytest.raises(ValueError, match="data"):
        ablate_channels(model, 3.0, layer="0")
