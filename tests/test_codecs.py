"""Codecs: exact bit-packing, bounded quantisation error, k-means beats uniform on skewed data, VQ round trip."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plenopack.codecs import CodecConfig, bitpack, decode_array, encode_array, kmeans, uniform
from plenopack.errors import PlenopackError


@pytest.mark.parametrize("bits", list(range(1, 17)))
def test_bitpack_exact_for_every_width(bits):
    rng = np.random.default_rng(bits)
    for count in (0, 1, 7, 8, 9, 1000):
        codes = rng.integers(0, 1 << bits, size=count)
        packed = bitpack.pack(codes, bits)
        assert len(packed) == bitpack.packed_size(count, bits)
        assert np.array_equal(bitpack.unpack(packed, count, bits), codes)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 255), max_size=300), st.integers(1, 8))
def test_bitpack_property(values, bits):
    codes = np.array(values, dtype=np.int64) % (1 << bits)
    assert np.array_equal(bitpack.unpack(bitpack.pack(codes, bits), len(codes), bits), codes)


def test_bitpack_rejects_overflow():
    with pytest.raises(ValueError):
        bitpack.pack(np.array([4]), 2)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_uniform_error_bounded_by_half_step(bits):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(500, 5)) * np.array([0.1, 1, 10, 0, 3])).astype(np.float32)  # one constant channel
    payload, params = uniform.encode(x, bits)
    y = uniform.decode(payload, params, 500, 5)
    step = (x.max(0) - x.min(0)) / ((1 << bits) - 1)
    assert np.all(np.abs(y - x) <= step / 2 + 1e-6 * np.abs(x).max())
    assert np.array_equal(y[:, 3], x[:, 3])  # constant channel is exact


def test_uniform_matches_perfception_formula():
    x = np.array([[0.0], [0.3], [1.0]], np.float32)
    codes, lo, scale = uniform.quantize(x, 2)
    assert codes[:, 0].tolist() == [0, 1, 3]  # round(0.3 / (1/3)) = 1
    assert lo[0] == 0.0 and scale[0] == pytest.approx(1 / 3)


def test_clip_uses_fixed_interval():
    x = np.array([[-5.0], [0.05], [3.0]], np.float32)
    payload, params = uniform.encode(x, 8, (-0.1, 0.1))
    y = uniform.decode(payload, params, 3, 1)
    assert y[0, 0] == pytest.approx(-0.1) and y[2, 0] == pytest.approx(0.1)
    assert abs(y[1, 0] - 0.05) <= 0.2 / 255 / 2 + 1e-7


def test_kmeans_beats_uniform_on_skewed_data():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 0.02, 5000), rng.normal(0, 3, 50)]).astype(np.float32)[:, None]
    for bits in (2, 3, 4):
        pu, qu = uniform.encode(x, bits)
        pk, qk = kmeans.encode(x, bits)
        err_u = np.mean((uniform.decode(pu, qu, len(x), 1) - x) ** 2)
        err_k = np.mean((kmeans.decode(pk, qk, len(x), 1) - x) ** 2)
        assert err_k < err_u


def test_kmeans_weights_favour_important_rows():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, size=(4000, 1)).astype(np.float32)
    w = np.where(x[:, 0] > 0.5, 100.0, 1.0)
    p, q = kmeans.encode(x, 3, w)
    y = kmeans.decode(p, q, len(x), 1)
    important = x[:, 0] > 0.5
    assert np.mean((y - x)[important] ** 2) < np.mean((y - x)[~important] ** 2)


def test_vq_round_trip_and_exact_rows():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(16, 12)).astype(np.float32)
    x = centres[rng.integers(0, 16, 3000)] + rng.normal(0, 0.01, (3000, 12)).astype(np.float32)
    w = rng.random(3000)
    spec = {"codec": "vq", "codebook": 64, "keep_exact": 0.05, "entropy": "zstd", "level": 3}
    payload, desc = encode_array(x, spec, w)
    y = decode_array(payload, desc, 3000, 12)
    assert np.sqrt(np.mean((y - x) ** 2)) < 0.05
    top = np.argsort(-w)[:150]
    np.testing.assert_allclose(y[top], x[top], atol=2e-3)  # float16-exact


@pytest.mark.parametrize("spec", [{"codec": "float32"}, {"codec": "float16"}, {"codec": "uniform", "bits": 5},
                                  {"codec": "kmeans", "bits": 4}, {"codec": "uniform", "bits": 8, "entropy": "zstd"}])
def test_array_round_trip_and_bad_length(spec):
    x = np.random.default_rng(4).normal(size=(300, 3)).astype(np.float32)
    payload, desc = encode_array(x, spec)
    y = decode_array(payload, desc, 300, 3)
    assert y.shape == (300, 3) and np.isfinite(y).all()
    with pytest.raises(Exception):
        decode_array(payload[:-3], desc, 300, 3)


def test_codec_config_plans_match_perfception_methods():
    assert CodecConfig("sh", 4).plan("density") == {"codec": "float32"}
    assert CodecConfig("sh", 4).plan("sh") == {"codec": "uniform", "bits": 4}
    assert CodecConfig("sh+d", 4).plan("density") == {"codec": "uniform", "bits": 4}
    assert CodecConfig("clip", 8).plan("sh")["clip"] == [-0.1, 0.1]
    assert CodecConfig("clip", 8).plan("density")["clip"] == [0.0, 100.0]
    assert CodecConfig("sh", 16).plan("sh") == {"codec": "float16"}
    with pytest.raises(PlenopackError):
        CodecConfig("zip")
    with pytest.raises(PlenopackError):
        CodecConfig("sh", 9)
