"""Tests for homomorphic encryption: CKKS (TenSEAL) inference and Paillier (phe) aggregation."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import Subset

ts = pytest.importorskip("tenseal")
phe = pytest.importorskip("phe")

from mlimaging.data import load_dataset  # noqa: E402
from mlimaging.models import LogisticRegression  # noqa: E402
from mlimaging.privacy.he import (  # noqa: E402
    CryptoNet,
    ckks_context,
    ckks_decrypt,
    ckks_encrypt,
    encrypted_cryptonet,
    encrypted_dot,
    encrypted_linear,
    encrypted_logistic_regression,
    encrypted_predict,
    evaluate_encrypted,
    paillier_keypair,
    paillier_sum,
)
from mlimaging.training import fit  # noqa: E402

DEEP = dict(poly_modulus_degree=16384, coeff_mod_bit_sizes=(60, 40, 40, 40, 40, 40, 40, 60), scale_bits=40)


@pytest.fixture(scope="module")
def ctx():
    return ckks_context()  # N = 8192, (60, 40, 60), scale 2^40


@functools.lru_cache(maxsize=1)
def _keys256():
    return paillier_keypair(key_length=256)


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist5k", split="train"), load_dataset("mnist5k", split="test")


def _train(model, data, epochs):
    fit(model, data, loss=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.Adam(p, lr=3e-3), epochs=epochs,
        batch_size=64, metrics=(), progress=False, seed=0)
    return model.eval()


@pytest.fixture(scope="module")
def logreg(mnist):
    return _train(LogisticRegression(num_classes=10), Subset(mnist[0], range(1500)), 2)


# ------------------------------------------------------------------------------ worked examples
def test_dot_product_worked_example(ctx):
    # <(1, 2, 3), (4, 5, 6)> + 0.5 = 32.5
    y = encrypted_dot(ckks_encrypt(ctx, [1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]), bias=0.5)
    assert abs(ckks_decrypt(ctx, y)[0] - 32.5) < 1e-3


def test_paillier_worked_example():
    res = paillier_sum([np.array([0.5, -1.25]), np.array([1.0, 0.25]), np.array([-0.5, 2.0])], keys=_keys256())
    np.testing.assert_array_equal(res.total, [1.0, 1.0])  # multiples of 2^-24: exact
    assert res.clients == 3 and res.values_per_ciphertext >= 2 and res.ciphertexts == 1


def test_context_parameters(ctx):
    assert (ctx.slots, ctx.depth, ctx.scale_bits) == (4096, 1, 40)
    assert ctx.max_value == 2.0 ** (60 - 40 - 1)
    assert ctx.has_secret_key and ctx.has_galois_keys
    pub = ctx.public()
    assert not pub.has_secret_key and pub.has_galois_keys and not pub.context.has_secret_key()


# --------------------------------------------------------------------------------------- oracles
def test_encrypted_dot_equals_numpy(ctx):
    g = np.random.default_rng(0)
    x, w = g.random(784), g.normal(size=784) * 0.1
    got = ckks_decrypt(ctx, encrypted_dot(ckks_encrypt(ctx, x), w, bias=-0.25))[0]
    assert abs(got - (x @ w - 0.25)) < 1e-3


def test_encrypted_linear_equals_torch(ctx):
    torch.manual_seed(0)
    lin = nn.Linear(20, 7)
    x = torch.rand(20, generator=torch.Generator().manual_seed(1))
    got = ckks_decrypt(ctx, encrypted_linear(ckks_encrypt(ctx, x), lin.weight, lin.bias))
    np.testing.assert_allclose(got, lin(x).detach().double().numpy(), atol=1e-3)


def test_logistic_regression_encrypted_equals_plain(logreg, mnist):
    ev = evaluate_encrypted(logreg, mnist[1], n=30)
    assert ev.n == 30
    assert ev.agreement >= 0.99
    assert ev.max_abs_error < 1e-3
    assert ev.encrypted_accuracy == pytest.approx(ev.plain_accuracy, abs=0.01)
    assert ev.plain_accuracy > 0.5  # a trained model, not chance
    assert ev.seconds == pytest.approx(ev.encrypt_seconds + ev.evaluate_seconds + ev.decrypt_seconds)
    assert ev.query_bytes > 0 and ev.reply_bytes > 0


def test_cryptonet_encrypted_equals_plain(mnist):
    # A small CryptoNet (1 channel, 16 hidden units: few rotations) keeps the test fast; the same
    # code path as the default network (4 channels, 64 hidden).
    torch.manual_seed(0)
    net = _train(CryptoNet(channels=1, hidden=16), Subset(mnist[0], range(1500)), 2)
    x, y = mnist[1].images[:2], mnist[1].targets[:2]
    res = encrypted_predict(net, x, context=ckks_context(**DEEP))
    plain = net(x).detach().double().numpy()
    np.testing.assert_array_equal(res.predictions, plain.argmax(1))
    np.testing.assert_allclose(res.scores, plain, atol=1e-2 * max(1.0, np.abs(plain).max()))
    assert res.scores.shape == (2, 10) and (y >= 0).all()


def test_cryptonet_layer_by_layer_order():
    # the im2col channels packed by encrypted_cryptonet follow torch's flatten (channel, row, column)
    torch.manual_seed(3)
    net = CryptoNet(image_size=10, channels=2, kernel_size=4, stride=3, hidden=5, num_classes=3).eval()
    x = torch.rand(1, 1, 10, 10, generator=torch.Generator().manual_seed(0))
    c = ckks_context(**DEEP)
    enc, windows = ts.im2col_encoding(c.context, x[0, 0].double().tolist(), 4, 4, 3)
    got = ckks_decrypt(c, encrypted_cryptonet(net, enc, windows))
    np.testing.assert_allclose(got, net(x)[0].detach().double().numpy(), atol=1e-3)


def test_paillier_packed_equals_phe_unpacked_and_fixed_point_oracle():
    g = np.random.default_rng(0)
    ups = [g.normal(size=37) for _ in range(4)]
    packed = paillier_sum(ups, keys=_keys256(), frac_bits=20)
    plain_phe = paillier_sum(ups, keys=_keys256(), frac_bits=20, pack=False)
    oracle = sum(np.rint(u * 2.0 ** 20).astype(np.int64) for u in ups) / 2.0 ** 20
    np.testing.assert_array_equal(packed.total, plain_phe.total)
    np.testing.assert_array_equal(packed.total, oracle)
    np.testing.assert_allclose(packed.total, sum(ups), atol=4 * 2.0 ** -21)
    assert plain_phe.ciphertexts == 37 and packed.ciphertexts < 37


# ------------------------------------------------------------------------------------ invariants
def test_ckks_linearity_and_roundtrip(ctx):
    g = np.random.default_rng(1)
    x, w1, w2 = g.random(50), g.normal(size=50), g.normal(size=50)
    ex = ckks_encrypt(ctx, x)
    np.testing.assert_allclose(ckks_decrypt(ctx, ex)[:50], x, atol=1e-6)
    a = ckks_decrypt(ctx, encrypted_dot(ex, w1 + w2))[0]
    b = ckks_decrypt(ctx, encrypted_dot(ex, w1))[0] + ckks_decrypt(ctx, encrypted_dot(ex, w2))[0]
    assert abs(a - b) < 1e-3


def test_public_context_encrypts_but_only_the_client_decrypts(ctx):
    ex = ckks_encrypt(ctx.public(), [0.25, -4.0])  # anyone with the public key can encrypt
    np.testing.assert_allclose(ckks_decrypt(ctx, ex), [0.25, -4.0], atol=1e-6)
    with pytest.raises(ValueError, match="no secret key"):
        ckks_decrypt(ctx.public(), ex)


def test_serialised_ciphertext_decrypts(ctx):
    y = encrypted_dot(ckks_encrypt(ctx, [2.0, 3.0]), np.array([1.0, 1.0]))
    assert abs(ckks_decrypt(ctx, y.serialize())[0] - 5.0) < 1e-3


def test_logistic_regression_server_scores(ctx, logreg, mnist):
    x = mnist[1].images[:1]
    scores = [ckks_decrypt(ctx, s)[0] for s in encrypted_logistic_regression(logreg, ckks_encrypt(ctx, x.flatten()))]
    np.testing.assert_allclose(scores, logreg(x)[0].detach().double().numpy(), atol=1e-3)


def test_binary_logistic_regression_threshold(ctx):
    torch.manual_seed(0)
    model = LogisticRegression(input_shape=(1, 3, 3), num_classes=2, binary=True)
    x = torch.rand(6, 1, 3, 3, generator=torch.Generator().manual_seed(2)) - 0.5
    res = encrypted_predict(model, x, context=ctx)
    np.testing.assert_array_equal(res.predictions, (model(x)[:, 0] > 0).long().numpy())


def test_paillier_invariants():
    g = np.random.default_rng(2)
    ups = [g.normal(size=10) for _ in range(3)]
    a = paillier_sum(ups, keys=_keys256()).total
    b = paillier_sum(ups[::-1], keys=_keys256()).total
    np.testing.assert_array_equal(a, b)  # order of clients does not matter
    zero = paillier_sum([ups[0], -ups[0]], keys=_keys256()).total
    np.testing.assert_array_equal(zero, np.zeros(10))
    t = paillier_sum([torch.ones(2, 3), torch.full((2, 3), 0.5)], keys=_keys256())
    assert isinstance(t.total, torch.Tensor) and t.total.dtype == torch.float32 and t.total.shape == (2, 3)
    torch.testing.assert_close(t.total, torch.full((2, 3), 1.5))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 4), st.integers(1, 30), st.integers(0, 30), st.floats(0.0, 1e4), st.integers(0, 10**6))
def test_paillier_error_bound_property(clients, size, frac_bits, scale, seed):
    g = np.random.default_rng(seed)
    ups = [g.uniform(-scale, scale, size=size) for _ in range(clients)]
    res = paillier_sum(ups, keys=_keys256(), frac_bits=frac_bits)
    err = np.abs(res.total - sum(ups)).max()
    assert err <= clients * 2.0 ** (-frac_bits - 1) * (1 + 1e-9) + 1e-9 * scale


# ------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    (dict(poly_modulus_degree=3000), "poly_modulus_degree"),
    (dict(poly_modulus_degree=True), "poly_modulus_degree"),
    (dict(coeff_mod_bit_sizes=(60, 40, 40, 40, 60)), "128-bit security"),
    (dict(coeff_mod_bit_sizes=(60,)), "at least two"),
    (dict(coeff_mod_bit_sizes=(60, 70, 60)), r"\[20, 60\]"),
    (dict(coeff_mod_bit_sizes=(60, 30, 60)), "must all equal scale_bits"),
    (dict(scale_bits=60), "scale_bits"),
    (dict(coeff_mod_bit_sizes=(60, 40, 50)), "special"),
    (dict(security_level=100), "security_level"),
])
def test_context_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ckks_context(**kwargs)


def test_encrypt_rejects_bad_input(ctx):
    for bad, match in [(np.zeros((2, 2)), "dimension"), (np.zeros(5000), "slots"), ([1.0, np.nan], "finite"),
                       (np.array([True, False]), "real"), (np.array(["a"]), "real"), ([], "empty"),
                       (torch.tensor([1 + 1j]), "real")]:
        with pytest.raises(ValueError, match=match):
            ckks_encrypt(ctx, bad)
    with pytest.raises(ValueError, match="CKKSContext"):
        ckks_encrypt(ctx.context, [1.0])


@settings(max_examples=20, deadline=None)
@given(st.floats(2.0 ** 19, 1e300))
def test_encrypt_rejects_values_beyond_the_scale(ctx, big):
    with pytest.raises(ValueError, match="too large for the CKKS parameters"):
        ckks_encrypt(ctx, [0.0, big])


def test_ops_reject_bad_shapes_and_missing_keys(ctx):
    ex = ckks_encrypt(ctx, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="weight has 2 entries"):
        encrypted_dot(ex, np.ones(2))
    with pytest.raises(ValueError, match="bias"):
        encrypted_dot(ex, np.ones(3), bias=float("nan"))
    with pytest.raises(ValueError, match="shape"):
        encrypted_linear(ex, np.ones((2, 4)))
    with pytest.raises(ValueError, match="bias must have 2"):
        encrypted_linear(ex, np.ones((2, 3)), np.ones(3))
    with pytest.raises(ValueError, match="CKKSVector"):
        encrypted_dot(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="no secret key"):
        ckks_decrypt(ctx.public(), ex)
    with pytest.raises(ValueError, match="CKKSVector"):
        ckks_decrypt(ctx, np.ones(3))
    nogal = ckks_context(galois_keys=False)
    with pytest.raises(ValueError, match="Galois"):
        encrypted_dot(ckks_encrypt(nogal, [1.0]), np.ones(1))
    with pytest.raises(ValueError, match="Galois"):
        encrypted_predict(nn.Linear(4, 2), torch.rand(1, 1, 2, 2), context=nogal)


def test_predict_rejects_bad_models_images_and_overflow(ctx):
    lr = LogisticRegression(input_shape=(1, 4, 4), num_classes=3)
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    for bad, match in [(x[0], "shape"), (x.long(), "floating"), (x.numpy().tolist(), "tensor"),
                       (torch.full_like(x, float("nan")), "finite"), (x[:0], "n >= 1")]:
        with pytest.raises(ValueError, match=match):
            encrypted_predict(lr, bad, context=ctx)
    with pytest.raises(ValueError, match="no secret key"):
        encrypted_predict(lr, x, context=ctx.public())
    with pytest.raises(ValueError, match="logistic regression"):
        encrypted_predict(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3)), x, context=ctx)
    with pytest.raises(ValueError, match="logistic regression"):
        encrypted_predict(nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.Sigmoid()), x, context=ctx)
    with torch.no_grad():
        lr.linear.weight.mul_(1e8)
    with pytest.raises(ValueError, match="logits on these images.*too large"):
        encrypted_predict(lr, x, context=ctx)
    with pytest.raises(ValueError, match=r"shape \(n, 1, 28, 28\)"):
        encrypted_predict(CryptoNet(), torch.rand(1, 1, 20, 20), context=ctx)
    with pytest.raises(ValueError, match="windows"):
        encrypted_cryptonet(CryptoNet(), ckks_encrypt(ctx, [1.0]), 3)
    with pytest.raises(ValueError, match="n must be"):
        evaluate_encrypted(lr, (x, torch.tensor([0, 1])), n=0)
    with pytest.raises(ValueError, match="labels"):
        evaluate_encrypted(lr, (x, torch.tensor([0])), n=2)


def test_cryptonet_module_validation():
    net = CryptoNet()
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert [t.shape[1:] for t in net.layers(torch.zeros(1, 1, 28, 28))][2:] == [(64,), (64,), (10,)]
    with pytest.raises(ValueError, match="shape"):
        net(torch.zeros(1, 3, 28, 28))
    with pytest.raises(ValueError, match="channels"):
        CryptoNet(channels=0)
    with pytest.raises(ValueError, match="kernel_size"):
        CryptoNet(image_size=5, kernel_size=7)


@pytest.mark.parametrize("updates, kwargs, match", [
    ([], {}, "non-empty list"),
    (np.ones(3), {}, "non-empty list"),
    ([[1.0, 2.0]], {}, "NumPy array or a torch tensor"),
    ([np.ones(3), np.ones(4)], {}, "shape"),
    ([np.ones(3, dtype=np.int64)], {}, "floating point"),
    ([np.array([1.0, np.inf])], {}, "finite"),
    ([np.zeros(0)], {}, "empty"),
    ([np.array([2.0])], dict(max_abs=1.0), "above max_abs"),
    ([np.array([1.0])], dict(max_abs=-1.0), "max_abs"),
    ([np.array([1.0])], dict(frac_bits=53), "frac_bits"),
    ([np.array([1e12])], dict(frac_bits=40), "too large for frac_bits"),
    ([np.array([1.0])], dict(keys=("pk", "sk")), "keys"),
    ([np.array([1.0])], dict(key_length=100), "key_length"),
])
def test_paillier_rejects_bad_input(updates, kwargs, match):
    kwargs = {"keys": _keys256(), **kwargs} if "key_length" not in kwargs else kwargs
    with pytest.raises(ValueError, match=match):
        paillier_sum(updates, **kwargs)


def test_paillier_missing_private_key():
    pk, _ = _keys256()
    with pytest.raises(ValueError, match="private key"):
        paillier_sum([np.ones(2)], keys=(pk, None))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=2, max_size=4))
def test_paillier_rejects_mismatched_shapes_property(sizes):
    ups = [np.ones(s) for s in sizes]
    if len(set(sizes)) == 1:
        assert paillier_sum(ups, keys=_keys256()).total.shape == (sizes[0],)
    else:
        with pytest.raises(ValueError, match="shape"):
            paillier_sum(ups, keys=_keys256())


# ----------------------------------------------------------------------------- optional extras
def test_module_imports_without_tenseal_and_phe():
    code = ("import sys; sys.modules['tenseal'] = None; sys.modules['phe'] = None\n"
            "import mlimaging.privacy.he as he\n"
            "for f, kw in ((he.ckks_context, {}), (he.paillier_keypair, {'key_length': 256})):\n"
            "    try:\n        f(**kw)\n    except ImportError as e:\n"
            "        assert \"pip install 'mlimaging[he]'\" in str(e), e\n"
            "    else:\n        raise SystemExit('no ImportError')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
