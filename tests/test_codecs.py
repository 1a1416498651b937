"""Codecs: exact bit-packing, bounded quantisation error, k-means beats uniform on skewed data, VQ round trip;
the registry (every codec round-trips, validates hostile parameters, bounds its decoding memory; a new codec
and method need nothing but their registration); zstd decoding that no frame can make allocate much."""

import json
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plenopack.codecs import (METHODS, ArrayCodec, CodecConfig, Method, bitpack, codec_names, decode_array,
                              encode_array, entropy, get_codec, kmeans, register_codec, register_method, uniform,
                              vq)
from plenopack import kernels
from plenopack.compress import _fixed_quantizer
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
    with pytest.raises(ValueError):
        bitpack.pack(np.array([4]), 2, "bytes")


@pytest.mark.parametrize("bits", [1, 5, 8, 9, 12, 16])
def test_byte_layout_round_trips_as_plain_little_endian_integers(bits):
    codes = np.random.default_rng(bits).integers(0, 1 << bits, size=1001)
    packed = bitpack.pack(codes, bits, "bytes")
    assert len(packed) == bitpack.packed_size(1001, bits, "bytes") == 1001 * (1 if bits <= 8 else 2)
    assert np.array_equal(np.frombuffer(packed, "u1" if bits <= 8 else "<u2"), codes)
    assert np.array_equal(bitpack.unpack(packed, 1001, bits, "bytes"), codes)
    with pytest.raises(ValueError):
        bitpack.unpack(packed[:-1], 1001, bits, "bytes")


def test_entropy_coded_codes_are_stored_as_bytes_and_compress_better_than_bit_planes():
    """Neighbouring voxels share codes (runs): zstd finds them in whole bytes, not spread over bit planes."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(256, 9)).astype(np.float32)
    runs = np.repeat(rng.integers(0, 256, 4000), rng.integers(1, 6, 4000))  # runs of 1-5 voxels
    x = centres[runs]
    for spec in ({"codec": "vq", "codebook": 256}, {"codec": "kmeans", "bits": 8}, {"codec": "uniform", "bits": 6}):
        planes, planes_desc = encode_array(x, {**spec, "level": 19})
        packed, desc = encode_array(x, {**spec, "entropy": "zstd", "level": 19})
        assert desc["params"]["layout"] == "bytes" and "layout" not in planes_desc["params"]
        as_planes = entropy.compress(planes, 19)
        assert len(packed) < 0.8 * len(as_planes), spec
        np.testing.assert_array_equal(decode_array(packed, desc, len(x), 9), decode_array(planes, planes_desc, len(x), 9))


def test_codes_outside_their_width_in_a_byte_stream_are_refused():
    x = np.random.default_rng(8).normal(size=(50, 2)).astype(np.float32)
    for spec in ({"codec": "kmeans", "bits": 3}, {"codec": "uniform", "bits": 3}):
        raw, params = get_codec(spec["codec"]).encode(x, {**spec, "entropy": "zstd"})
        bad = bytearray(raw)
        bad[17] = 8  # a 4-bit code in a 3-bit stream
        with pytest.raises(ValueError):
            get_codec(spec["codec"]).decode(bytes(bad), params, 50, 2)
    raw, params = get_codec("vq").encode(x, {"codec": "vq", "codebook": 4, "entropy": "zstd"})
    bad = bytearray(raw)
    bad[4 * 2 + 3] = 4  # index 4 of a 4-entry codebook (after its 4 x 2 8-bit codes)
    with pytest.raises(ValueError):
        get_codec("vq").decode(bytes(bad), params, 50, 2)


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


def test_vq_residual_stage_refines_the_rows_served_worst_and_round_trips():
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(6000, 27)) * np.linspace(0.05, 1.0, 27)).astype(np.float32)
    w = rng.random(6000) ** 3
    one = vq.quantize(x, 64, w, keep_exact=0.01)
    two = vq.quantize(x, 64, w, keep_exact=0.01, residual_rows=0.2, residual_codebook=32)
    np.testing.assert_array_equal(two.codebook, one.codebook)  # the first stage is unchanged
    assert len(two.residual_rows) == 1200 and not np.isin(two.residual_rows, two.exact_rows).any()
    error = w * ((x - one.quantised()) ** 2).sum(1)
    error[one.exact_rows] = -1.0
    assert set(two.residual_rows) == set(np.argsort(-error, kind="stable")[:1200])  # the worst 20%, not exact
    weighted = [float((w * ((x - s.quantised()) ** 2).sum(1))[two.residual_rows].sum()) for s in (one, two)]
    assert weighted[1] < 0.8 * weighted[0]
    for spec in ({}, {"entropy": "zstd", "level": 3}, {"codebook_bits": 16}):
        spec = {"codec": "vq", "codebook": 64, "keep_exact": 0.01, "residual_rows": 0.2, "residual_codebook": 32,
                **spec}
        payload, desc = encode_array(x, spec, w)
        params = desc["params"]
        assert params["residual_rows"] == 1200 and params["residual_codebook_size"] == 32
        assert params["residual_index_bits"] == 5 and desc["raw_length"] == vq.VQCodec().raw_length(params, 6000, 27)
        y = decode_array(payload, desc, 6000, 27)
        state = vq.quantize(x, 64, w, 0.01, codebook_bits=spec.get("codebook_bits", 8), residual_rows=0.2,
                            residual_codebook=32)
        expected = state.quantised()
        expected[state.exact_rows] = x[state.exact_rows].astype(np.float16)
        np.testing.assert_allclose(y, expected, atol=1e-6)
    shuffled = np.random.default_rng(1).permutation(6000)
    moved = two.reordered(shuffled)  # as the file writer sorts rows
    np.testing.assert_array_equal(moved.quantised(), two.quantised()[shuffled])
    assert np.all(np.diff(moved.residual_rows) > 0) and np.all(np.diff(moved.exact_rows) > 0)


def test_vq_prefer_runs_shrinks_the_entropy_coded_indices_for_a_small_error():
    rng = np.random.default_rng(8)
    field = np.cumsum(rng.normal(size=(20000, 6)), axis=0) * 0.05  # a smooth field: neighbours are alike
    x = (field + rng.normal(0, 0.05, field.shape)).astype(np.float32)
    w = rng.random(len(x))
    sizes, errors = {}, {}
    for lam in (0.0, 2.0):
        spec = {"codec": "vq", "codebook": 256, "prefer_runs": lam, "entropy": "zstd", "level": 19}
        payload, desc = encode_array(x, spec, w)
        y = decode_array(payload, desc, len(x), 6)
        sizes[lam], errors[lam] = len(payload), float(np.sum(w * ((x - y) ** 2).sum(1)))
    assert sizes[2.0] < 0.95 * sizes[0.0] and errors[0.0] < errors[2.0] < 1.5 * errors[0.0]


def test_vq_codebook_bits_8_halves_the_codebook_within_half_a_step_and_old_float16_streams_still_decode():
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(4000, 27)) * np.linspace(0.05, 2.0, 27)).astype(np.float32)
    streams = {bits: get_codec("vq").encode(x, {"codec": "vq", "codebook": 256, "codebook_bits": bits})
               for bits in (8, 16)}
    for bits, (raw, params) in streams.items():
        assert params.get("codebook_bits", 16) == bits  # float16: the stream of versions 1 and 2, no key
        codebook = vq.decode(raw, params, 4000, 27)
        state = vq.quantize(x, 256, codebook_bits=bits)
        np.testing.assert_array_equal(codebook, state.codebook[state.index])  # rows hold the stored entries
    (raw8, p8), (raw16, p16) = streams[8], streams[16]
    assert len(raw16) - len(raw8) == 256 * 27  # 1 byte a value instead of 2 (lows and steps in the parameters)
    trained = vq.train_codebook(x, np.ones(len(x)), 256)
    stored = vq.stored_codebook(trained, 8)
    step = (trained.max(0) - trained.min(0)) / 255
    assert np.all(np.abs(stored - trained) <= 0.5 * step + 1e-6)
    np.testing.assert_array_equal(vq.decode(raw16, {**p16, "codebook_bits": 16}, 4000, 27),
                                  vq.decode(raw16, p16, 4000, 27))
    with pytest.raises(ValueError):
        get_codec("vq").validate_params({**p8, "codebook_bits": 12}, 4000, 27)


def test_vq_full_passes_make_entries_the_weighted_means_of_their_rows_and_lower_the_weighted_error():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3000, 9)).astype(np.float32)
    weights = rng.pareto(1.5, size=3000) + 1e-3  # heavy-tailed, as ray weights are

    def weighted_error(codebook):
        index = kernels.nearest_entries(x, codebook)
        return float((weights * ((x - codebook[index]) ** 2).sum(1)).sum()), index

    sampled = vq.train_codebook(x, weights, 64, full_passes=0)
    refined = vq.train_codebook(x, weights, 64, full_passes=1)
    error_sampled, index = weighted_error(sampled)
    assert weighted_error(refined)[0] < error_sampled
    for entry in np.unique(index)[:10]:  # one pass: each entry is the weighted mean of the rows it stood for
        rows = index == entry
        np.testing.assert_allclose(refined[entry], np.average(x[rows], axis=0, weights=weights[rows]), atol=1e-5)


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


# ---------------------------------------------------------------- the codec registry

SPEC = {"bits": 5, "codebook": 16, "keep_exact": 0.1, "residual_rows": 0.2, "residual_codebook": 8}  # every codec
# takes what it needs from this


def spec_for(name, **extra):
    return {"codec": name, **SPEC, **extra}


@pytest.mark.parametrize("name", codec_names())
@pytest.mark.parametrize("cols", [1, 12])
def test_every_codec_round_trips_and_its_quantizer_matches_the_file(name, cols):
    rng = np.random.default_rng(cols)
    x = (rng.normal(size=(700, cols)) * rng.uniform(0.01, 3, cols)).astype(np.float32)
    weights = rng.random(700)
    codec = get_codec(name)
    raw, params = codec.encode(x, spec_for(name), weights)
    json.dumps(params)  # parameters go into the JSON header
    codec.validate_params(params, 700, cols)
    assert codec.raw_length(params, 700, cols) == len(raw)
    y = codec.decode(raw, params, 700, cols)
    assert y.dtype == np.float32 and y.shape == (700, cols) and y.flags.c_contiguous
    q = _fixed_quantizer(x, spec_for(name), weights)(x)  # compress.py's entry point delegates to the codec
    assert q.dtype == np.float32 and q.shape == x.shape
    if name == "vq":  # nearest-codeword search may break exact ties differently in another batch
        assert np.mean(np.all(q == y, axis=1)) > 0.99
    else:
        assert np.array_equal(q, y)
    payload, desc = encode_array(x, spec_for(name, entropy="zstd", level=3), weights)
    coded = {**params, "layout": "bytes"} if "bits" in params or "index_bits" in params else params
    assert desc == {"codec": name, "params": coded, "raw_length": desc["raw_length"], "entropy": "zstd"}
    assert desc["raw_length"] == codec.raw_length(coded, 700, cols)
    assert np.array_equal(decode_array(payload, desc, 700, cols), y) or name == "vq"


@pytest.mark.parametrize("spec", [{"codec": "float32"}, {"codec": "float16"}, {"codec": "uniform", "bits": 1},
                                  {"codec": "uniform", "bits": 8}, {"codec": "uniform", "bits": 12},
                                  {"codec": "kmeans", "bits": 3}, {"codec": "kmeans", "bits": 9},
                                  {"codec": "vq", "codebook": 64, "keep_exact": 0.3},
                                  {"codec": "vq", "codebook": 3, "keep_exact": 1.0},
                                  {"codec": "uniform", "bits": 12, "entropy": "zstd"},
                                  {"codec": "kmeans", "bits": 3, "entropy": "zstd"},
                                  {"codec": "vq", "codebook": 300, "keep_exact": 0.1, "entropy": "zstd"},
                                  {"codec": "vq", "codebook": 64, "residual_rows": 0.5, "residual_codebook": 300},
                                  {"codec": "vq", "codebook": 64, "residual_rows": 1.0, "residual_codebook": 16,
                                   "entropy": "zstd"}])
@pytest.mark.parametrize("cols", [1, 27])
def test_decode_memory_bounds_what_decode_allocates(spec, cols):
    x = np.random.default_rng(5).normal(size=(12000, cols)).astype(np.float32)
    raw, params = get_codec(spec["codec"]).encode(x, spec)
    codec = get_codec(spec["codec"])
    tracemalloc.start()
    try:
        codec.decode(raw, params, len(x), cols)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bound = codec.decode_memory(params, len(x), cols)
    assert 4 * x.size <= peak <= bound + (256 << 10)  # + fixed overheads: numpy's cast buffers, Python objects


@pytest.mark.parametrize("name, params", [
    ("float32", []), ("float16", None),
    ("uniform", []), ("uniform", {"bits": 8, "lo": [0.0]}), ("uniform", {"bits": True, "lo": [0.0], "scale": [1.0]}),
    ("uniform", {"bits": 0, "lo": [0.0], "scale": [1.0]}), ("uniform", {"bits": 17, "lo": [0.0], "scale": [1.0]}),
    ("uniform", {"bits": 8, "lo": [0.0, 1.0], "scale": [1.0]}), ("uniform", {"bits": 8, "lo": "0", "scale": [1.0]}),
    ("uniform", {"bits": 8, "lo": [1e39], "scale": [1.0]}), ("uniform", {"bits": 8, "lo": [10 ** 400], "scale": [1.0]}),
    ("uniform", {"bits": 8, "lo": [0.0], "scale": [float("nan")]}), ("uniform", {"bits": 8.0, "lo": [0], "scale": [1]}),
    ("uniform", {"bits": 8, "lo": [0.0], "scale": [1.0], "clip": [0.0]}),
    ("kmeans", {"bits": 2, "codebook": [[0, 1, 2]]}), ("kmeans", {"bits": 2, "codebook": [0, 1, 2, 3]}),
    ("kmeans", {"bits": 2, "codebook": [[0, 1, 2, 3], [0, 1, 2, 3]]}), ("kmeans", {"codebook": [[0, 1]]}),
    ("vq", {"codebook_size": 0, "index_bits": 1, "exact_rows": 0}),
    ("vq", {"codebook_size": 5, "index_bits": 2, "exact_rows": 0}),
    ("vq", {"codebook_size": 4, "index_bits": 2, "exact_rows": 11}),
    ("vq", {"codebook_size": 4, "index_bits": 17, "exact_rows": 0}),
    ("vq", {"codebook_size": 70000, "index_bits": 16, "exact_rows": 0}),
    ("vq", {"codebook_size": "4", "index_bits": 2, "exact_rows": 0}),
    ("vq", {"codebook_size": 4, "index_bits": 2, "exact_rows": 0, "layout": "nibbles"}),
    ("vq", {"codebook_size": 4, "index_bits": 2, "exact_rows": 0, "codebook_bits": True}),
    ("vq", {"codebook_size": 4, "index_bits": 2, "exact_rows": 0, "codebook_bits": 8}),
    ("vq", {"codebook_size": 4, "index_bits": 2, "exact_rows": 0, "codebook_bits": 8, "codebook_low": [0.0],
            "codebook_step": [float("nan")]}),
    ("vq", {"codebook_size": 4, "index_bits": 2, "exact_rows": 0, "residual_rows": 3}),
    ("vq", {"codebook_size": 4, "index_bits": 2, "exact_rows": 0, "residual_rows": 11, "residual_codebook_size": 4,
            "residual_index_bits": 2}),
    ("vq", {"codebook_size": 4, "index_bits": 2, "exact_rows": 0, "residual_rows": 3, "residual_codebook_size": 9,
            "residual_index_bits": 3}),
    ("vq", {"codebook_size": 4, "index_bits": 2, "exact_rows": 0, "codebook_bits": 8, "codebook_low": [0.0],
            "codebook_step": [1.0], "residual_rows": 3, "residual_codebook_size": 4, "residual_index_bits": 2}),
    ("vq", {"codebook_size": 4, "index_bits": 2, "exact_rows": 0, "codebook_bits": 7, "codebook_low": [0.0],
            "codebook_step": [1.0], "codebook_order": "diagonal"}),
    ("vq", {"codebook_size": 4, "index_bits": 2, "exact_rows": 0, "codebook_bits": 5, "codebook_low": [0.0],
            "codebook_step": [1.0], "codebook_order": "columns"}),
    ("kmeans", {"bits": 1, "codebook": [[0, 1]], "layout": 3}),
    ("uniform", {"bits": 8, "lo": [0.0], "scale": [1.0], "layout": "bits"}),
])
def test_validate_params_rejects_hostile_params_with_value_error(name, params):
    with pytest.raises(ValueError):
        get_codec(name).validate_params(params, 10, 1)


def test_registry_lookups_and_duplicates():
    assert {"float32", "float16", "uniform", "kmeans", "vq"} <= set(codec_names())
    with pytest.raises(ValueError, match="unknown array codec 'zip'.*known: .*float16"):
        get_codec("zip")
    with pytest.raises(ValueError):
        get_codec(["float32"])
    with pytest.raises(ValueError, match="already registered"):
        register_codec(get_codec("uniform"))
    with pytest.raises(ValueError, match="already registered"):
        register_method("sh", METHODS["sh"])
    with pytest.raises(PlenopackError, match="unknown array codec"):
        encode_array(np.zeros((3, 1), np.float32), {"codec": "zip"})
    with pytest.raises(PlenopackError, match="unknown density codec 'vq'"):
        CodecConfig("sh", density="vq")  # vq is not a scalar codec
    with pytest.raises(ValueError, match="unknown array"):
        CodecConfig("sh").plan("colour")


class Bfloat16Codec(ArrayCodec):
    """A codec written for this test: the high 16 bits of each float32 (bfloat16, truncated)."""

    name = "test-bfloat16"

    def encode(self, values, spec, weights=None, state=None):
        return (np.ascontiguousarray(values, np.float32).view("<u4") >> 16).astype("<u2").tobytes(), {}

    def validate_params(self, params, rows, cols):
        if params != {}:
            raise ValueError("bfloat16 takes no parameters")

    def raw_length(self, params, rows, cols):
        return 2 * rows * cols

    def decode_memory(self, params, rows, cols):
        return 8 * rows * cols

    def decode(self, raw, params, rows, cols):
        high = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
        return high.view(np.float32).reshape(rows, cols)

    def fixed_quantizer(self, values, spec, weights=None):
        return lambda x: ((np.asarray(x, np.float32).view(np.uint32) >> 16) << 16).view(np.float32)


def test_a_new_codec_and_method_need_only_their_own_registration(tmp_path, monkeypatch):
    from plenopack.codecs import base
    from plenopack.fileformat import read_plen, write_plen
    from plenopack.grid import Grid

    monkeypatch.setitem(base._CODECS, Bfloat16Codec.name, Bfloat16Codec())
    monkeypatch.setitem(METHODS, "test-bf16", Method(lambda c: {"codec": "float32"},
                                                     lambda c: {"codec": "test-bfloat16"},
                                                     lambda c: {"codec": "test-bfloat16"}))
    rng = np.random.default_rng(6)
    coords = np.unique(rng.integers(0, 8, (100, 3)), axis=0)
    grid = Grid.from_coords(8, coords, rng.normal(size=len(coords)).astype(np.float32),
                            rng.normal(size=(len(coords), 12)).astype(np.float32), 1)
    write_plen(tmp_path / "bf.plen", grid, {}, CodecConfig("test-bf16", entropy="zstd"))
    back = read_plen(tmp_path / "bf.plen").grid
    rows = back.links[tuple(grid.occupied_coords().T)]
    assert np.array_equal(back.density[rows], grid.density)
    truncated = ((grid.sh.view(np.uint32) >> 16) << 16).view(np.float32)
    assert np.array_equal(back.sh[rows], truncated) and not np.array_equal(truncated, grid.sh)


# ---------------------------------------------------------------- entropy coding with bounded memory

def zstd_rle_frame(blocks: int, block_size: int, claimed: int | None) -> bytes:
    """A zstd frame of RLE zero blocks, declaring ``claimed`` bytes of content (or none): a few bytes that
    decode to (or claim) gigabytes."""
    out = struct.pack("<I", 0xFD2FB528) + (bytes([0xC0, 0x50]) + struct.pack("<Q", claimed) if claimed is not None
                                           else bytes([0x00, 0x50]))
    block = ((1 << 1) | (block_size << 3)).to_bytes(3, "little") + b"\0"
    last = (1 | (1 << 1) | (block_size << 3)).to_bytes(3, "little") + b"\0"
    return out + block * (blocks - 1) + last


def test_zstd_frames_claiming_or_holding_gigabytes_cost_nothing():
    lying = zstd_rle_frame(1, 1000, claimed=1 << 40)  # says 1 TiB, holds 1000 bytes
    holding = zstd_rle_frame(8192, 1 << 17, claimed=1 << 30)  # really 1 GiB of zeros, in 32 KiB
    tracemalloc.start()
    try:
        with pytest.raises(ValueError):
            entropy.decompress_exact(lying, 100)
        with pytest.raises(ValueError, match="more"):
            entropy.decompress_exact(holding, 5000)
        with pytest.raises(ValueError, match="more than"):
            for _ in entropy.iter_decompressed(holding, 1 << 20, 1 << 15):
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    assert entropy.decompress_exact(zstd_rle_frame(3, 100, 300), 300) == bytes(300)
    with pytest.raises(ValueError, match="ends after 300"):
        list(entropy.iter_decompressed(zstd_rle_frame(3, 100, None), 301, 64))
    with pytest.raises(ValueError, match="corrupt zstd"):
        entropy.decompress_exact(b"not zstd at all", 10)
