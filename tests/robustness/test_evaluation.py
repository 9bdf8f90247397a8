"""robust_accuracy and attack_success_rate: worked example, identities, data forms, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlimaging.robustness import FGSM, PGD, attack_success_rate, fgsm, robust_accuracy


def _linear_problem():
    """Logits (2 - s, s - 2) with s = sum of 4 pixels: class 1 iff s > 2. FGSM shifts s by 4 eps."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(100, 1, 2, 2, generator=g)
    y = (x.flatten(1).sum(1) > 2).long()
    y[:10] = 1 - y[:10]                              # 10 samples the model gets wrong
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    model[1].weight.data = torch.tensor([[-1.0] * 4, [1.0] * 4])
    model[1].bias.data = torch.tensor([2.0, -2.0])
    return model, x, y


def test_worked_example_linear_model():
    model, x, y = _linear_problem()
    margin = (x.flatten(1).sum(1) - 2).abs()
    correct = torch.ones(100, dtype=torch.bool)
    correct[:10] = False
    eps_list = [0.0, 0.05, 0.1, 0.2]
    rows = robust_accuracy(model, (x, y), FGSM(valid_range=None), eps_list)
    srs = attack_success_rate(model, (x, y), FGSM(valid_range=None), eps_list)
    for row, sr, eps in zip(rows, srs, eps_list, strict=True):
        survive = correct & (margin > 4 * eps)
        assert row["eps"] == eps and row["n"] == 100
        assert row["accuracy"] == pytest.approx(int(survive.sum()) / 100)
        assert sr["n"] == 90
        assert sr["success_rate"] == pytest.approx(1 - float(survive.sum()) / 90)


def test_accuracy_is_clean_accuracy_times_survival():
    """Binary linear model: ascending the true class's loss never fixes a mistake, so
    acc(eps) = acc(0) (1 - ASR(eps)) exactly."""
    model, x, y = _linear_problem()
    eps_list = [0.0, 0.03, 0.1, 0.3]
    acc = robust_accuracy(model, (x, y), "pgd", eps_list, batch_size=32)
    asr = attack_success_rate(model, (x, y), "pgd", eps_list, batch_size=32)
    for a, s in zip(acc, asr, strict=True):
        assert a["accuracy"] == pytest.approx(acc[0]["accuracy"] * (1 - s["success_rate"]))
    assert [a["accuracy"] for a in acc] == sorted((a["accuracy"] for a in acc), reverse=True)
    assert asr[0]["success_rate"] == 0.0


def test_data_forms_agree_and_match_a_manual_loop():
    model, x, y = _linear_problem()
    atk = FGSM()
    ref = [robust_accuracy(model, (x, y), atk, [0.1], batch_size=7)]
    ref.append(robust_accuracy(model, TensorDataset(x, y), atk, [0.1], batch_size=16))
    ref.append(robust_accuracy(model, DataLoader(TensorDataset(x, y), batch_size=50), atk, [0.1]))
    ref.append(robust_accuracy(model, (x, y), lambda m, xb, yb, eps: fgsm(m, xb, yb, eps=eps), [0.1]))
    manual = float((model(fgsm(model, x, y, eps=0.1)).argmax(1) == y).float().mean())
    for rows in ref:
        assert rows[0]["accuracy"] == pytest.approx(manual)


def test_targeted_success_rate():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(64, 1, 4, 4, generator=g), torch.randint(0, 4, (64,), generator=g)
    atk = PGD(steps=10, targeted=True)
    rows = attack_success_rate(model, (x, y), atk, [0.0, 0.05, 1.0], targets=2)
    pred = model(x).argmax(1)
    assert rows[0] == {"eps": 0.0, "success_rate": 0.0, "n": int((pred != 2).sum())}
    assert rows[1]["success_rate"] <= rows[2]["success_rate"]
    assert rows[2]["success_rate"] == 1.0            # the whole [0, 1] box: the target is reachable
    default = attack_success_rate(model, (x, y), atk, [0.0], targets=None)
    assert default[0]["n"] == int((pred != (y + 1) % 4).sum())


def test_segmentation_pixel_accuracy():
    """A 1x1-conv segmenter: class 0 iff x > 0.5. FGSM moves each pixel by eps towards 0.5, so a
    pixel flips iff |x - 0.5| < eps, and the accuracy is the fraction of the others."""
    model = nn.Conv2d(1, 2, 1)
    model.weight.data = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)
    model.bias.data = torch.tensor([-0.5, 0.5])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 8, 8, generator=g)
    y = (x[:, 0] <= 0.5).long()
    rows = robust_accuracy(model, (x, y), "fgsm", [0.0, 0.1, 0.3], batch_size=4)
    for row, eps in zip(rows, [0.0, 0.1, 0.3], strict=True):
        assert row["n"] == 6
        assert row["accuracy"] == pytest.approx(float(((x - 0.5).abs() > eps).float().mean()), abs=1e-6)
    with pytest.raises(ValueError, match="classifier"):
        attack_success_rate(model, (x, y), "fgsm", [0.1])


def test_empty_success_denominator_is_nan():
    model, x, y = _linear_problem()
    rows = attack_success_rate(model, (x[:10], y[:10]), "fgsm", [0.1])   # all misclassified
    assert rows[0]["n"] == 0 and math.isnan(rows[0]["success_rate"])


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(attack="cw"), "attack"),
    (dict(attack=3), "attack"),
    (dict(eps_list=[-0.1]), "eps_list"),
    (dict(eps_list=[]), "eps_list"),
    (dict(batch_size=0), "batch_size"),
    (dict(data=[1, 2, 3]), "data"),
    (dict(data=(torch.zeros(3, 1, 2, 2), torch.zeros(2, dtype=torch.long))), "same length"),
])
def test_bad_arguments(kwargs, match):
    model, x, y = _linear_problem()
    args = dict(data=(x, y), attack="fgsm", eps_list=[0.1], batch_size=16) | kwargs
    with pytest.raises(ValueError, match=match):
        robust_accuracy(model, args.pop("data"), args.pop("attack"), args.pop("eps_list"), **args)
