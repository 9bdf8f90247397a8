"""Tests of the model registry (register_model, create_model, list_models, model_info)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlimaging.models import (
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
    registry,
)

ALL_MODELS = {
    "logistic_regression", "feature_linear", "lenet", "fc_lenet", "alexnet",
    "vgg11", "vgg11_bn", "vgg16", "vgg16_bn",
}


@pytest.fixture
def isolated(monkeypatch):
    """A copy of the model registry, so tests can register models without leaking them."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


def test_list_models_has_issue4_models_sorted():
    names = list_models()
    assert ALL_MODELS <= set(names)
    assert names == sorted(names)


def test_model_info_fields():
    info = model_info("lenet")
    assert isinstance(info, ModelInfo)
    assert info.name == "lenet"
    assert info.input_shape == (1, 32, 32)
    assert "LeNet" in info.description
    assert info.defaults == {"in_channels": 1, "num_classes": 10, "pad_input": True}
    assert model_info("logistic_regression").input_shape == (1, 28, 28)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'resnet999'") as err:
        create_model("resnet999")
    assert "lenet" in str(err.value) and "vgg16_bn" in str(err.value)
    with pytest.raises(ValueError, match="unknown model"):
        model_info("nope")


def test_unknown_kwarg_names_it_and_the_model():
    with pytest.raises(ValueError, match=r"'lenet'.*\['widht'\]") as err:
        create_model("lenet", widht=2)
    assert "num_classes" in str(err.value)  # the valid options are listed


def test_bad_seed_raises():
    with pytest.raises(ValueError, match="seed"):
        create_model("lenet", seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        create_model("lenet", seed=True)


def test_seed_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    create_model("lenet", seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_without_seed_global_rng_is_used():
    torch.manual_seed(7)
    a = create_model("lenet").state_dict()
    torch.manual_seed(7)
    b = create_model("lenet").state_dict()
    torch.manual_seed(8)
    c = create_model("lenet").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_register_and_create(isolated):
    @register_model("toy", input_shape=(2, 4, 4))
    def toy(*, num_classes: int = 10, hidden: int = 3) -> nn.Module:
        """A toy model.

        More text that is not the description.
        """
        return nn.Sequential(nn.Flatten(), nn.Linear(32, hidden), nn.Linear(hidden, num_classes))

    assert "toy" in list_models()
    info = model_info("toy")
    assert info.description == "A toy model."
    assert info.input_shape == (2, 4, 4)
    assert info.defaults == {"num_classes": 10, "hidden": 3}
    model = create_model("toy", num_classes=4, hidden=5, seed=3)
    assert model(torch.zeros(1, 2, 4, 4)).shape == (1, 4)
    assert model[1].out_features == 5
    # re-registering the same builder is allowed (module reload); another one is not
    register_model("toy", input_shape=(2, 4, 4))(toy)

    def other(**kwargs):
        return nn.Identity()

    with pytest.raises(ValueError, match="already registered"):
        register_model("toy", input_shape=(1, 1, 1))(other)


def test_builder_with_var_kwargs_gets_everything(isolated):
    seen = {}

    @register_model("anything", input_shape=(1, 2, 2), description="explicit")
    def build(**kwargs):
        seen.update(kwargs)
        return nn.Identity()

    create_model("anything", foo=1, bar="x")
    assert seen == {"foo": 1, "bar": "x"}
    assert model_info("anything").description == "explicit"


def test_builder_must_return_module(isolated):
    @register_model("broken", input_shape=(1, 2, 2))
    def build():
        return "not a module"

    with pytest.raises(TypeError, match="nn.Module"):
        create_model("broken")


@pytest.mark.parametrize(
    "name, shape",
    [("", (1, 2, 2)), ("ok", ()), ("ok", (1, 0, 2)), ("ok", (1, 2.5, 2)), ("ok", (True, 2, 2))],
)
def test_register_bad_arguments(isolated, name, shape):
    with pytest.raises(ValueError):
        register_model(name, input_shape=shape)
