"""Transfer learning: freeze by name prefix, replace the head, train only what is trainable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mlimaging.training import Callback, fit, freeze, replace_head, unfreeze

sys.path.insert(0, str(Path(__file__).parent))  # helpers next to this file (suite uses --import-mode=importlib)
from _training_data import make_data  # noqa: E402


class Net(nn.Module):
    """A small CNN with a features/classifier layout and a decoy name (fc30 next to fc3)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
        self.fc30 = nn.Linear(4 * 6 * 6, 16)
        self.fc3 = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc30(self.features(x))))


def images(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    return torch.utils.data.TensorDataset(x, (x[:, 0, :4].mean((1, 2)) > 0).long())


def test_freeze_keeps_only_prefixed_parameters_and_respects_name_boundaries():
    torch.manual_seed(0)
    net = Net()
    kept = freeze(net, trainable=["fc3"])
    assert kept == ["fc3.weight", "fc3.bias"]  # not fc30.*
    assert [n for n, p in net.named_parameters() if p.requires_grad] == kept
    assert freeze(net, trainable=["features.1", "fc30."]) == ["features.1.weight", "features.1.bias",
                                                              "fc30.weight", "fc30.bias"]
    assert freeze(net) == [] and not any(p.requires_grad for p in net.parameters())
    unfreeze(net)
    assert all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("bad", [["fc4"], ["fc"], [""], ["features.9"]])
def test_freeze_prefix_matching_nothing_raises(bad):
    with pytest.raises(ValueError, match="trainable"):
        freeze(Net(), trainable=bad)


def test_freeze_then_fit_changes_only_the_head():
    torch.manual_seed(0)
    net = replace_head(Net(), 2, seed=1)
    freeze(net, trainable=["fc3"])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    seen = {}

    class Params(Callback):
        def on_epoch_start(self, state):
            seen["n"] = sum(p.numel() for g in state.optimizer.param_groups for p in g["params"])

    fit(net, images(), loss=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1),
        epochs=2, batch_size=16, metrics=(), callbacks=[Params()], progress=False)
    after = net.state_dict()
    assert seen["n"] == 16 * 2 + 2  # the factory got the head's parameters only
    for name in ("features.0.weight", "features.0.bias", "features.1.weight", "fc30.weight", "fc30.bias"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["fc3.weight"], after["fc3.weight"])
    assert not torch.equal(before["fc3.bias"], after["fc3.bias"])
    # freezing does not stop BatchNorm statistics (documented): they moved in train mode
    assert not torch.equal(before["features.1.running_mean"], after["features.1.running_mean"])


def test_replace_head_linear_keeps_input_size_and_is_seeded():
    torch.manual_seed(0)
    net = Net(10)
    old = net.fc3
    replace_head(net, 4, seed=3)
    assert net.fc3 is not old and (net.fc3.in_features, net.fc3.out_features) == (16, 4)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 4)
    assert net.fc3.weight.requires_grad
    other = replace_head(Net(10), 4, seed=3)
    assert torch.equal(net.fc3.weight, other.fc3.weight) and torch.equal(net.fc3.bias, other.fc3.bias)
    state = torch.get_rng_state()
    replace_head(net, 4, seed=9)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    assert not torch.equal(net.fc3.weight, other.fc3.weight)


def test_replace_head_in_sequential_without_bias_and_dtype():
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 7, bias=False)).double()
    replace_head(net, 2)
    head = net[3]
    assert isinstance(head, nn.Linear) and head.bias is None and head.weight.dtype == torch.float64
    assert head.weight.shape == (2, 5)


def test_replace_head_dense_model_uses_last_pointwise_conv():
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.ReLU(),
                        nn.Conv2d(8, 3, 1))
    replace_head(net, 5)
    assert isinstance(net[4], nn.Conv2d) and net[4].kernel_size == (1, 1)
    assert (net[4].in_channels, net[4].out_channels) == (8, 5)
    assert net(torch.zeros(1, 1, 6, 6)).shape == (1, 5, 6, 6)


@pytest.mark.parametrize("num_classes", [0, -1, 2.5, True])
def test_replace_head_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        replace_head(Net(), num_classes)


def test_replace_head_without_a_head_raises():
    with pytest.raises(ValueError, match="no nn.Linear"):
        replace_head(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), 3)


def test_optimizer_built_before_replace_head_is_rejected():
    net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    replace_head(net, 3)
    with pytest.raises(ValueError, match="replace_head"):
        fit(net, make_data(32), loss=nn.CrossEntropyLoss(), optimizer=opt, epochs=1, progress=False)


def test_optimizer_instance_from_filtered_params_works():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))
    freeze(net, trainable=["2"])
    w0 = net[0].weight.clone()
    opt = torch.optim.SGD(filter(lambda p: p.requires_grad, net.parameters()), lr=0.5, weight_decay=0.1)
    fit(net, make_data(32), loss=nn.CrossEntropyLoss(), optimizer=opt, epochs=1, progress=False)
    assert torch.equal(net[0].weight, w0)
