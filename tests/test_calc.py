"""Tests of mlimaging.calc: the course's exam questions by hand, torch layers as the oracle for
output sizes, and receptive fields measured empirically through the network's Jacobian."""

from __future__ import annotations

import io
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mlimaging.calc import (
    LayerInfo,
    conv_output_size,
    count_parameters,
    pool_output_size,
    receptive_field,
    summary,
    transposed_conv_output_size,
    yolo_output_shape,
)

FAST = settings(max_examples=40, deadline=None)


def _torch_size(layer: nn.Module, size: tuple[int, int]) -> tuple[int, int] | None:
    """Spatial output size of a real torch layer, or None when torch refuses the configuration."""
    try:
        with torch.no_grad():
            return tuple(layer(torch.zeros(1, 1, *size)).shape[2:])
    except (RuntimeError, ValueError):
        return None


def _ours(func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except ValueError:
        return None


pair = st.tuples(st.integers(1, 4), st.integers(1, 4))


# --------------------------------------------------------------------------- output sizes
def test_conv_output_size_worked_examples():
    assert conv_output_size(28, 5) == 24  # (28 - 5)/1 + 1
    assert conv_output_size(32, 5) == 28  # LeNet's first conv
    assert conv_output_size(227, 11, stride=4) == 55  # AlexNet: (227 - 11)/4 + 1
    assert conv_output_size(224, 3, padding=1) == 224  # VGG keeps the size
    assert conv_output_size(7, 3, stride=2, dilation=2) == 2  # effective kernel 5: (7-5)//2 + 1
    assert conv_output_size((28, 30), (3, 5)) == (26, 26)
    assert conv_output_size([10, 11], 3, stride=(1, 2)) == (8, 5)
    assert conv_output_size(9, 4, padding="same") == 9 and conv_output_size(9, 4, padding="valid") == 6


@FAST
@given(size=st.tuples(st.integers(1, 20), st.integers(1, 20)), kernel=pair, padding=st.tuples(st.integers(0, 3), st.integers(0, 3)),
       stride=pair, dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)))
def test_conv_output_size_matches_torch_conv2d(size, kernel, padding, stride, dilation):
    layer = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
    assert _ours(conv_output_size, size, kernel, padding=padding, stride=stride, dilation=dilation) == _torch_size(layer, size)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@FAST
@given(size=st.integers(1, 16), kernel=st.integers(1, 6), dilation=st.integers(1, 3))
def test_same_padding_matches_torch(size, kernel, dilation):
    layer = nn.Conv2d(1, 1, kernel, padding="same", dilation=dilation)
    assert conv_output_size((size, size), kernel, padding="same", dilation=dilation) == _torch_size(layer, (size, size))


@FAST
@given(size=st.tuples(st.integers(1, 12), st.integers(1, 12)), kernel=pair, padding=st.tuples(st.integers(0, 3), st.integers(0, 3)),
       stride=pair, dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)), output_padding=st.tuples(st.integers(0, 3), st.integers(0, 3)))
def test_transposed_conv_output_size_matches_torch(size, kernel, padding, stride, dilation, output_padding):
    kw = dict(padding=padding, stride=stride, dilation=dilation, output_padding=output_padding)
    try:
        layer = nn.ConvTranspose2d(1, 1, kernel, **kw)
    except ValueError:  # torch checks output_padding when the layer is built
        layer = None
    expected = None if layer is None else _torch_size(layer, size)
    assert _ours(transposed_conv_output_size, size, kernel, **kw) == expected


def test_transposed_conv_worked_examples():
    assert transposed_conv_output_size(7, 3, stride=2) == 15  # (7-1)*2 + 3
    assert transposed_conv_output_size(16, 4, stride=2, padding=1) == 32  # doubles
    assert transposed_conv_output_size(7, 3, stride=2, padding=1, output_padding=1) == 14
    assert transposed_conv_output_size(conv_output_size(28, 5), 5) == 28  # undoes the conv's size change


@FAST
@given(size=st.tuples(st.integers(1, 16), st.integers(1, 16)), kernel=pair, stride=st.one_of(st.none(), pair),
       padding=st.tuples(st.integers(0, 2), st.integers(0, 2)), dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       ceil_mode=st.booleans())
def test_pool_output_size_matches_torch_maxpool2d(size, kernel, stride, padding, dilation, ceil_mode):
    kw = dict(stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    layer = nn.MaxPool2d(kernel, **kw)
    assert _ours(pool_output_size, size, kernel, **kw) == _torch_size(layer, size)


@FAST
@given(size=st.integers(1, 16), kernel=st.integers(1, 4), stride=st.integers(1, 4), padding=st.integers(0, 2), ceil_mode=st.booleans())
def test_pool_output_size_matches_torch_avgpool2d(size, kernel, stride, padding, ceil_mode):
    kw = dict(stride=stride, padding=padding, ceil_mode=ceil_mode)
    layer = nn.AvgPool2d(kernel, **kw)
    assert _ours(pool_output_size, (size, size), kernel, **kw) == _torch_size(layer, (size, size))


def test_pool_output_size_worked_examples():
    assert pool_output_size(28, 2) == 14  # stride defaults to the kernel
    assert pool_output_size(7, 2) == 3 and pool_output_size(7, 2, ceil_mode=True) == 4
    assert pool_output_size(55, 3, stride=2) == 27  # AlexNet's overlapping pooling
    # ceil mode: a last window that would start in the right padding is dropped (5 -> 3, not 4)
    assert pool_output_size(5, 2, stride=2, padding=1, ceil_mode=True) == 3


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(size=0, kernel=3), "size"),
        (dict(size=5, kernel=0), "kernel"),
        (dict(size=5, kernel=3, padding=-1), "padding"),
        (dict(size=5, kernel=3, stride=0), "stride"),
        (dict(size=5, kernel=3, dilation=0), "dilation"),
        (dict(size=5, kernel=9), "kernel"),
        (dict(size=5, kernel=3, stride=2.0), "stride"),
        (dict(size=True, kernel=3), "size"),
        (dict(size=(5, 5), kernel=(3, 3, 3)), "size"),
        (dict(size=(5, 5), kernel=(3, 0)), "kernel[1]"),
        (dict(size=5, kernel=3, padding="half"), "padding"),
        (dict(size=5, kernel=3, padding="same", stride=2), "same"),
    ],
)
def test_conv_output_size_bad_input_names_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name.replace("[", r"\[")):
        conv_output_size(**kwargs)


def test_transposed_and_pool_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="output_padding"):
        transposed_conv_output_size(5, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="padding"):
        transposed_conv_output_size(1, 1, padding=1)
    with pytest.raises(ValueError, match="padding"):
        pool_output_size(8, 2, padding=2)
    with pytest.raises(ValueError, match="kernel"):
        pool_output_size(3, 4)


@FAST
@given(bad=st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.text(max_size=3), st.none()))
def test_bad_sizes_are_value_errors(bad):
    with pytest.raises(ValueError, match="size"):
        conv_output_size(bad, 1)
    with pytest.raises(ValueError, match="size"):
        pool_output_size(bad, 1)


# --------------------------------------------------------------------------- YOLO, parameters
def test_yolo_exam_questions():
    # exam Q7: 11x11 cells, 4 boxes of 5 numbers (x, y, w, h, confidence) and 10 classes
    assert yolo_output_shape(11, 4, 10) == (11, 11, 4 * 5 + 10) == (11, 11, 30)
    # exam Q8: 1000 classes -> 11 x 11 x (4*5 + 1000) = 123,420 values
    assert yolo_output_shape(11, 4, 1000) == (11, 11, 1020)
    assert np.prod(yolo_output_shape(11, 4, 1000)) == 123_420
    assert yolo_output_shape(7, 2, 20) == (7, 7, 30)  # Redmon et al. 2016, PASCAL VOC
    assert yolo_output_shape((13, 9), 1, 1) == (13, 9, 6)


@pytest.mark.parametrize(("args", "name"), [((0, 4, 10), "grid"), ((11, 0, 10), "boxes"), ((11, 4, -1), "classes"),
                                            ((11.5, 4, 10), "grid"), (((1, 2, 3), 4, 10), "grid")])
def test_yolo_bad_input(args, name):
    with pytest.raises(ValueError, match=name):
        yolo_output_shape(*args)


def test_count_parameters_logistic_regression_exam_question():
    # exam Q1: logistic regression on raw 28x28 pixels: 784 weights + 1 bias
    assert count_parameters(nn.Linear(28 * 28, 1)) == 785
    assert count_parameters(nn.Sequential(nn.Flatten(), nn.Linear(784, 1), nn.Sigmoid())) == 785


def test_count_parameters_trainable_shared_and_bad_input():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 2))
    # conv 3*8*9 + 8 = 224; batch norm 2*8 = 16 (its running stats are buffers); linear 8*2 + 2 = 18
    assert count_parameters(net) == 224 + 16 + 18
    net[0].requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == 16 + 18
    shared = nn.Linear(4, 4)
    assert count_parameters(nn.Sequential(shared, nn.ReLU(), shared)) == 20  # counted once
    with pytest.raises(ValueError, match="model"):
        count_parameters("resnet")
    with pytest.raises(ValueError, match="lazy"):
        count_parameters(nn.LazyLinear(3))


# --------------------------------------------------------------------------- course networks
def lenet() -> nn.Sequential:
    """LeNet-5 (LeCun et al. 1998) as in the course, for 1x32x32 inputs."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


def test_lenet_shapes_receptive_fields_and_parameters():
    rows = receptive_field(lenet(), (1, 32, 32))
    assert all(isinstance(r, LayerInfo) for r in rows) and len(rows) == 12
    assert [r.output_shape for r in rows[:6]] == [(6, 28, 28)] * 2 + [(6, 14, 14)] + [(16, 10, 10)] * 2 + [(16, 5, 5)]
    assert [r.output_shape for r in rows[6:]] == [(400,), (120,), (120,), (84,), (84,), (10,)]
    # by hand, r += (K-1)*j, j *= S: conv5 r=5 j=1; pool2 r=5+1*1=6 j=2; conv5 r=6+4*2=14 j=2;
    # pool2 r=14+1*2=16 j=4.  A unit of the last conv-pool stage sees 16x16 pixels, 4 apart.
    assert [(r.receptive_field, r.jump) for r in rows[:6]] == [(5, 1), (5, 1), (6, 2), (14, 2), (14, 2), (16, 4)]
    # Flatten and the fully connected layers see the whole 32x32 input and have no grid
    assert all(r.receptive_field == 32 and r.jump is None for r in rows[6:])
    # parameters: conv1 6*(1*25+1)=156, conv2 16*(6*25+1)=2,416, fc1 400*120+120=48,120,
    # fc2 120*84+84=10,164, fc3 84*10+10=850; total 61,706
    assert [r.params for r in rows if r.params] == [156, 2416, 48120, 10164, 850]
    assert count_parameters(lenet()) == 61_706
    assert rows[-1].name == "11" and rows[0].type == "Conv2d"


def test_fully_convolutional_lenet_gives_a_map_on_larger_inputs():
    # course: replacing the FC layers by convolutions, 32x32 gives 1x1 and 64x64 gives 9x9
    fcn = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Conv2d(120, 10, 1))
    assert receptive_field(fcn, (1, 32, 32))[-1].output_shape == (10, 1, 1)
    last = receptive_field(fcn, (1, 64, 64))[-1]
    assert last.output_shape == (10, 9, 9)
    assert (last.receptive_field, last.jump) == (16 + 4 * 4, 4)  # the whole 32x32 LeNet input


def encoder_decoder() -> nn.Sequential:
    """Exam Q5: five conv and five transposed conv layers mapping 16x16x64 to 32x32x10.

    (The course notes' transcribed answer is garbled: 12 layers, 1 input channel and stride-2
    transposed convolutions that overshoot 32; this is one valid design.)
    """
    return nn.Sequential(
        nn.Conv2d(64, 32, 3), nn.ReLU(),  # 16 -> 14
        nn.Conv2d(32, 32, 3), nn.ReLU(),  # 14 -> 12
        nn.Conv2d(32, 16, 3), nn.ReLU(),  # 12 -> 10
        nn.Conv2d(16, 16, 3), nn.ReLU(),  # 10 -> 8
        nn.Conv2d(16, 8, 3), nn.ReLU(),  # 8 -> 6
        nn.ConvTranspose2d(8, 16, 3), nn.ReLU(),  # (6-1)*1 + 3 = 8
        nn.ConvTranspose2d(16, 16, 4, stride=2, padding=1), nn.ReLU(),  # (8-1)*2 - 2 + 4 = 16
        nn.ConvTranspose2d(16, 16, 3, padding=1), nn.ReLU(),  # (16-1)*1 - 2 + 3 = 16
        nn.ConvTranspose2d(16, 16, 4, stride=2, padding=1), nn.ReLU(),  # (16-1)*2 - 2 + 4 = 32
        nn.ConvTranspose2d(16, 10, 3, padding=1),  # 32, 10 channels
    )  # fmt: skip


def test_encoder_decoder_exam_design():
    rows = [r for r in receptive_field(encoder_decoder(), (64, 16, 16)) if r.type != "ReLU"]
    assert [r.output_shape for r in rows] == [
        (32, 14, 14), (32, 12, 12), (16, 10, 10), (16, 8, 8), (8, 6, 6),
        (16, 8, 8), (16, 16, 16), (16, 16, 16), (16, 32, 32), (10, 32, 32),
    ]  # fmt: skip
    # Conv2d(i, o, k): k*k*i*o + o; ConvTranspose2d(i, o, k): k*k*i*o + o
    by_hand = [
        9 * 64 * 32 + 32,  # 18,464
        9 * 32 * 32 + 32,  # 9,248
        9 * 32 * 16 + 16,  # 4,624
        9 * 16 * 16 + 16,  # 2,320
        9 * 16 * 8 + 8,  # 1,160
        9 * 8 * 16 + 16,  # 1,168
        16 * 16 * 16 + 16,  # 4,112
        9 * 16 * 16 + 16,  # 2,320
        16 * 16 * 16 + 16,  # 4,112
        9 * 16 * 10 + 10,  # 1,450
    ]
    assert [r.params for r in rows] == by_hand
    assert count_parameters(encoder_decoder()) == sum(by_hand) == 48_978
    # encoder: five 3x3 convs see 11x11; transposed convolutions halve the jump
    assert [r.receptive_field for r in rows[:5]] == [3, 5, 7, 9, 11]
    assert [r.jump for r in rows] == [1] * 6 + [Fraction(1, 2)] * 2 + [Fraction(1, 4)] * 2


# --------------------------------------------------------------------------- receptive fields
def _stack(n: int, **kw) -> nn.Sequential:
    return nn.Sequential(*[nn.Conv2d(1, 1, 3, **kw) for _ in range(n)])


def test_stacked_3x3_convolutions_exam_values():
    assert receptive_field(_stack(2), (1, 16, 16))[-1].receptive_field == 5
    assert receptive_field(_stack(3), (1, 16, 16))[-1].receptive_field == 7
    # by hand: 2x2 stride-2 pool r=2 j=2, then a 3x3 conv reads 3 pooled units 2 pixels apart:
    # r = 2 + (3-1)*2 = 6 (pixels 0-1, 2-3, 4-5), j = 2
    rows = receptive_field(nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(1, 1, 3)), (1, 16, 16))
    assert [(r.receptive_field, r.jump) for r in rows] == [(2, 2), (6, 2)]
    # the other order: conv r=3, then the pool adds (2-1)*1 = 1
    assert receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2)), (1, 16, 16))[-1].receptive_field == 4


@FAST
@given(k=st.integers(1, 8), padding=st.integers(0, 1))
def test_k_stacked_3x3_convs_see_2k_plus_1(k, padding):
    rows = receptive_field(_stack(k, padding=padding), (1, 20, 20))
    assert [r.receptive_field for r in rows] == [2 * i + 1 for i in range(1, k + 1)]
    assert all(r.jump == 1 for r in rows)


def test_anisotropic_3d_and_non_spatial_inputs():
    rows = receptive_field(nn.Sequential(nn.Conv2d(1, 2, (3, 5), stride=(1, 2)), nn.Conv2d(2, 2, 3)), (1, 20, 20))
    assert (rows[0].receptive_field, rows[0].jump) == ((3, 5), (1, 2))
    assert (rows[1].receptive_field, rows[1].jump) == ((5, 9), (1, 2))  # 3 + 2*1, 5 + 2*2
    rows = receptive_field(nn.Sequential(nn.Conv3d(1, 2, 3), nn.MaxPool3d(2), nn.Conv3d(2, 2, 3)), (1, 12, 12, 12))
    assert [r.receptive_field for r in rows] == [3, 4, 8] and rows[-1].output_shape == (2, 3, 3, 3)
    rows = receptive_field(nn.Sequential(nn.Conv1d(1, 2, 5, dilation=2)), (1, 30))
    assert rows[0].receptive_field == 9 and rows[0].output_shape == (2, 22)
    rows = receptive_field(nn.Sequential(nn.Linear(784, 10), nn.Softmax(dim=1)), (784,))
    assert [(r.receptive_field, r.jump) for r in rows] == [(None, None), (None, None)]
    rows = receptive_field(nn.Sequential(nn.Flatten(), nn.Linear(12 * 20, 2)), (1, 12, 20))
    assert rows[-1].receptive_field == (12, 20)  # whole (non-square) input


def test_upsampling_padding_and_adaptive_pooling():
    net = nn.Sequential(nn.ZeroPad2d(2), nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 3),
                        nn.AdaptiveAvgPool2d(4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = receptive_field(net, (1, 8, 8))
    assert [r.output_shape[1:] for r in rows] == [(12, 12), (10, 10), (20, 20), (18, 18), (4, 4)]
    # pad: r=1; conv r=3; nearest x2: r=3, j=1/2; conv reads 3 upsampled units = 2 source units -> 4
    # adaptive pool 18 -> 4 has unequal windows: the whole input (documented convention)
    assert [r.receptive_field for r in rows] == [1, 3, 3, 4, 8]
    assert [r.jump for r in rows[:4]] == [1, 1, Fraction(1, 2), Fraction(1, 2)] and rows[4].jump is None
    assert len(caught) == 1 and "AdaptiveAvgPool2d" in str(caught[0].message)
    # equal windows: adaptive pooling 16 -> 4 is a 4x4 pool with stride 4
    rows = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.AdaptiveMaxPool2d(4)), (1, 16, 16))
    assert (rows[-1].receptive_field, rows[-1].jump) == (3 + 3, 4)


class CourseLeNet(nn.Module):
    """The course's LeNet: pooling is functional in forward, so hooks cannot see it."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        return F.log_softmax(self.fc3(F.relu(self.fc2(F.relu(self.fc1(x))))), dim=1)


def test_functional_pooling_is_detected_with_a_warning():
    with pytest.warns(UserWarning, match="conv2"):
        rows = receptive_field(CourseLeNet(), (1, 32, 32))
    assert [r.name for r in rows] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert rows[0].receptive_field == 5 and rows[1].receptive_field == 32 and rows[1].jump is None
    assert rows[1].output_shape == (16, 10, 10) and sum(r.params for r in rows) == 61_706


def test_receptive_field_restores_the_model_and_rejects_bad_input():
    net = lenet().train()
    receptive_field(net, (1, 32, 32))
    assert net.training and all(not m._forward_hooks for m in net.modules())
    for bad in ["1x32x32", (), (1, 0, 32), (1, 32.5, 32), None]:
        with pytest.raises(ValueError, match="input_shape"):
            receptive_field(net, bad)
    with pytest.raises(ValueError, match="input_shape"):  # 28x28 does not reach fc1 with 400 inputs
        receptive_field(net, (1, 28, 28))
    with pytest.raises(ValueError, match="model"):
        receptive_field(lambda x: x, (1, 4, 4))


def test_summary_table_and_totals():
    net = lenet()
    net[0].requires_grad_(False)
    out = io.StringIO()
    text = summary(net, (1, 32, 32), file=out)
    assert out.getvalue() == text
    assert "Total params: 61,706" in text and "Trainable params: 61,550" in text and "Non-trainable params: 156" in text
    line = next(ln for ln in text.splitlines() if "MaxPool2d" in ln and "16 x 5 x 5" in ln)
    cells = [c.strip() for c in line.split("│")]
    assert cells[1:7] == ["5", "MaxPool2d", "16 x 5 x 5", "4", "16", "0"]  # name, type, shape, jump, field, params
    assert "48,120" in text and "\x1b[" not in text


def test_summary_prints_to_stdout_by_default(capsys):
    text = summary(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ConvTranspose2d(2, 1, 4, stride=2)), (1, 8, 8))
    assert capsys.readouterr().out == text
    assert "1/2" in text and "ConvTranspose2d" in text


# --------------------------------------------------------------------------- empirical check
def _measured_fields(layers: list[nn.Module], size: int) -> int:
    """Largest extent of the nonzero input-gradient support of one output unit (1D).

    With all-ones weights, no biases and average pooling the network is linear with positive
    coefficients, so feeding the N one-hot inputs as a batch gives its Jacobian, and each
    output unit's nonzero column support is exactly the input pixels it depends on. Border
    clipping can only shrink a support, so the maximum over units is the unclipped field.
    """
    net = nn.Sequential(*layers).double()
    for module in net.modules():
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
            nn.init.ones_(module.weight)
    with torch.no_grad():
        jac = net(torch.eye(size, dtype=torch.float64)[:, None, :])[:, 0, :].T  # (outputs, inputs)
    nonzero = jac.abs() > 0
    best = 0
    for row in nonzero:
        idx = torch.nonzero(row).flatten()
        if len(idx):
            best = max(best, int(idx.max() - idx.min() + 1))
    return best


def _layer(kind: str, k: int, s: int, p: int, d: int, *, measuring: bool) -> nn.Module:
    if kind == "conv":
        return nn.Conv1d(1, 1, k, stride=s, padding=p, dilation=d, bias=False)
    if kind == "pool":  # measured with the average pool of the same geometry (max pool gradients are sparse)
        return nn.AvgPool1d(k, s, padding=min(p, k // 2)) if measuring else nn.MaxPool1d(k, s, padding=min(p, k // 2))
    if kind == "convT":
        return nn.ConvTranspose1d(1, 1, k, stride=s, padding=min(p, d * (k - 1) // 2), dilation=d, bias=False)
    return nn.Upsample(scale_factor=s, mode="nearest" if d == 1 else "linear")


spec = st.tuples(st.sampled_from(["conv", "pool"]), st.integers(1, 3), st.integers(1, 2), st.integers(0, 1), st.integers(1, 2))


@FAST
@given(specs=st.lists(spec, min_size=1, max_size=4))
def test_receptive_field_equals_measured_support_conv_pool(specs):
    # largest possible field: 1 + 4*(1+2+4+8) = 61 pixels, so 128 inputs leave interior units
    reported = receptive_field(nn.Sequential(*[_layer(*s, measuring=False) for s in specs]), (1, 128))
    for i in range(len(specs)):  # every row: the network cut after that layer
        assert reported[i].receptive_field == _measured_fields([_layer(*s, measuring=True) for s in specs[: i + 1]], 128)


spec_up = st.tuples(st.sampled_from(["conv", "pool", "convT", "up"]), st.integers(1, 4), st.integers(1, 2),
                    st.integers(0, 1), st.integers(1, 2))


@FAST
@given(specs=st.lists(spec_up, min_size=1, max_size=3))
def test_receptive_field_equals_measured_support_with_upsampling(specs):
    rows = receptive_field(nn.Sequential(*[_layer(*s, measuring=False) for s in specs]), (1, 64))
    assert rows[-1].receptive_field == _measured_fields([_layer(*s, measuring=True) for s in specs], 64)


def test_encoder_decoder_fields_equal_measured_support():
    # the exam design's geometry in 1D with one channel: the field of every layer, measured
    geometry = [(3, 1, 0, False)] * 5 + [(3, 1, 0, True), (4, 2, 1, True), (3, 1, 1, True), (4, 2, 1, True), (3, 1, 1, True)]
    layers = [(nn.ConvTranspose1d if t else nn.Conv1d)(1, 1, k, stride=s, padding=p, bias=False) for k, s, p, t in geometry]
    reported = [r.receptive_field for r in receptive_field(nn.Sequential(*layers), (1, 48))]
    measured = [_measured_fields(layers[: i + 1], 48) for i in range(len(layers))]
    assert reported == measured == [3, 5, 7, 9, 11, 13, 14, 15, 16, 16]


def test_2d_anisotropic_field_equals_measured_support():
    layers = [nn.Conv2d(1, 1, (3, 5), stride=(2, 1), padding=1, bias=False), nn.AvgPool2d((2, 3), stride=(2, 2)),
              nn.Conv2d(1, 1, 3, dilation=(1, 2), bias=False)]
    net = nn.Sequential(*layers).double()
    for m in layers[::2]:
        nn.init.ones_(m.weight)
    n = 30
    with torch.no_grad():
        jac = net(torch.eye(n * n, dtype=torch.float64).reshape(n * n, 1, n, n)).reshape(n * n, -1).T
    extents = []
    for row in jac.abs() > 0:
        ys, xs = np.nonzero(row.reshape(n, n).numpy())
        extents.append((ys.max() - ys.min() + 1, xs.max() - xs.min() + 1))
    measured = tuple(int(v) for v in np.max(extents, axis=0))
    # by hand: rows (3, s2) r=3 j=2; (2, s2) r=3+1*2=5 j=4; (3) r=5+2*4=13
    #          cols (5, s1) r=5 j=1; (3, s2) r=5+2*1=7 j=2; (3, d2) r=7+4*2=15
    assert receptive_field(net, (1, n, n))[-1].receptive_field == measured == (13, 15)
