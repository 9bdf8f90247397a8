"""Oracle: torchattacks' FGSM, PGD and PGDL2 on the same input, and the HU equivariance they lack."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlimaging.robustness import fgsm, pgd

torchattacks = pytest.importorskip("torchattacks")

LO, HI = -1024.0, 3071.0


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).eval()


class _FromHU(nn.Module):
    """The same network on HU images: maps HU to [0, 1] first."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner((x - LO) / (HI - LO))


@pytest.fixture(scope="module", params=["channels_last", "contiguous"])
def batch(request):
    """The same images in two memory layouts. Our attacks run 2D CPU batches channels-last
    (faster oneDNN kernels). Given channels-last images torchattacks runs the same kernels, so
    the results are bit-identical; given contiguous ones its gradients may differ in the last
    bits, which can flip the sign of a gradient that is zero up to rounding (see _same)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(24, 1, 12, 12, generator=g), torch.randint(0, 10, (24,), generator=g)
    if request.param == "channels_last":
        x = torch.empty_like(x, memory_format=torch.channels_last).copy_(x)
        assert x.stride(1) == 1
    return x, y


def _same(ours: torch.Tensor, ref: torch.Tensor, x: torch.Tensor, atol: float = 1e-6) -> None:
    """Equal to ``atol`` (0: bit for bit) for channels-last input; for contiguous input at most
    0.1% of the values may differ (rounding-level gradients whose sign is arbitrary)."""
    if x.stride(1) == 1:
        if atol == 0:
            assert torch.equal(ours, ref)
        else:
            torch.testing.assert_close(ours, ref, rtol=0, atol=atol)
    else:
        assert float(((ours - ref).abs() > atol).float().mean()) <= 1e-3


@pytest.mark.parametrize("eps", [0.0, 0.05, 8 / 255, 0.3])
def test_fgsm_equals_torchattacks_exactly(batch, eps):
    x, y = batch
    model = _model()
    _same(fgsm(model, x, y, eps=eps), torchattacks.FGSM(model, eps=eps)(x, y), x, atol=0)


def test_targeted_fgsm_equals_torchattacks(batch):
    x, y = batch
    model, target = _model(), (y + 1) % 10
    ref = torchattacks.FGSM(model, eps=0.1)
    ref.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % 10)
    _same(fgsm(model, x, target, eps=0.1, targeted=True), ref(x, y), x, atol=0)


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_linf_equals_torchattacks(batch, random_start):
    x, y = batch
    model = _model()
    torch.manual_seed(11)
    ours = pgd(model, x, y, eps=0.1, alpha=0.01, steps=20, random_start=random_start)
    torch.manual_seed(11)  # the same random start: both draw it from the global generator
    ref = torchattacks.PGD(model, eps=0.1, alpha=0.01, steps=20, random_start=random_start)(x, y)
    _same(ours, ref, x)


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_l2_equals_torchattacks(batch, random_start):
    x, y = batch
    model = _model()
    torch.manual_seed(12)
    ours = pgd(model, x, y, eps=1.0, alpha=0.2, steps=10, norm="l2", random_start=random_start)
    torch.manual_seed(12)
    ref = torchattacks.PGDL2(model, eps=1.0, alpha=0.2, steps=10, random_start=random_start)(x, y)
    _same(ours, ref, x)


def test_targeted_pgd_equals_torchattacks(batch):
    x, y = batch
    model = _model()
    ref = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=10, random_start=False)
    ref.set_mode_targeted_by_function(lambda images, labels: (labels + 3) % 10)
    ours = pgd(model, x, (y + 3) % 10, eps=0.1, alpha=0.02, steps=10, random_start=False, targeted=True)
    _same(ours, ref(x, y), x)


@pytest.mark.parametrize("method", ["fgsm", "linf", "l2"])
def test_hounsfield_equivariance(batch, method):
    """Our attack on HU with eps_relative equals torchattacks' on the [0, 1] image, mapped back."""
    x01, y = batch
    inner = _model()
    hu_model = _FromHU(inner)
    w = HI - LO
    x_hu = LO + w * x01
    u_back = (x_hu - LO) / w   # the [0, 1] image the HU model sees
    if method == "fgsm":
        ours = fgsm(hu_model, x_hu, y, eps=8 / 255, valid_range=(LO, HI), eps_relative=True)
        ref = torchattacks.FGSM(inner, eps=8 / 255)(u_back, y)
    elif method == "linf":
        ours = pgd(hu_model, x_hu, y, eps=8 / 255, alpha=2 / 255, steps=10, random_start=False,
                   valid_range=(LO, HI), eps_relative=True)
        ref = torchattacks.PGD(inner, eps=8 / 255, alpha=2 / 255, steps=10, random_start=False)(u_back, y)
    else:
        ours = pgd(hu_model, x_hu, y, eps=0.5, alpha=0.1, steps=10, norm="l2", random_start=False,
                   valid_range=(LO, HI), eps_relative=True)
        ref = torchattacks.PGDL2(inner, eps=0.5, alpha=0.1, steps=10, random_start=False)(u_back, y)
    # HU values near 3000 carry float32 rounding of about 2e-4 HU per operation; the model sees
    # (x - lo) / w, equal to the [0, 1] image up to rounding, so a gradient that is zero up to
    # rounding may take either sign: allow 0.1% of the pixels to differ
    far = ((ours - (LO + w * ref)).abs() > 0.05).float().mean()
    assert float(far) <= 1e-3
    # torchattacks on the HU image itself clips everything to [0, 1]: the failure we avoid
    assert torchattacks.FGSM(hu_model, eps=8 / 255)(x_hu, y).max() <= 1.0
