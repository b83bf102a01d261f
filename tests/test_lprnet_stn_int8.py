"""int8 readers with a spatial transformer: two signatures (locate, read) and the warp in the runtime."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from core.errors import AlprError  # noqa: E402
from lprnet.export import LOCATE, READ, convert_to_tflite, merge_signatures  # noqa: E402
from lprnet.model import IDENTITY_THETA, AffineSampler, build_lprnet, freeze_context, stn_stages  # noqa: E402
from lprnet.preprocess import affine_warp, preprocess_batch  # noqa: E402
from lprnet.reader import PlateRead, PlateReader  # noqa: E402
from tests.fixtures.lprnet_synth import render_digits  # noqa: E402

# Ops that would mean float arithmetic inside the "full-integer" graph (the one-graph STN export had
# DEQUANTIZE -> FLOOR -> QUANTIZE/CAST), and the sampler's gathers, which belong to the runtime now.
FLOAT_ISLAND_OPS = {"DEQUANTIZE", "FLOOR", "CAST", "GATHER", "GATHER_ND"}


def _stn_model(seed: int = 0):
    """An STN reader whose localisation really moves the image (a few pixels) and whose logits vary."""
    import keras

    keras.utils.set_random_seed(seed)  # the initial weights too: the same model whatever ran before
    rng = np.random.default_rng(seed)
    model = build_lprnet(68, stn=True)
    for layer in model.layers:
        if layer.name.startswith("backbone_") and len(layer.weights) == 4:  # BatchNormalization
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 2.0, v.shape)])
    kernel, bias = model.get_layer("stn_theta").get_weights()
    model.get_layer("stn_theta").set_weights([rng.normal(0, 0.03, kernel.shape).astype(np.float32), bias])
    return model


@pytest.fixture(scope="module")
def crops() -> list:
    rng = np.random.default_rng(7)
    return [render_digits("".join(map(str, rng.integers(0, 10, 4))), rng) for _ in range(16)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, crops):
    model = _stn_model()
    path = tmp_path_factory.mktemp("stn8") / "stn-int8.tflite"
    convert_to_tflite(model, path, "int8", calibration=preprocess_batch(crops))
    return model, path


def test_runtime_warp_matches_the_keras_sampler() -> None:
    """affine_warp repeats AffineSampler's float32 arithmetic step by step, so the two agree to float32
    rounding: a different rounding of a sample position can only move it by ~1e-7 pixel (bilinear is
    continuous) and pixels are in [-1, 1], hence the 1e-5 bound. Random near-identity thetas (scale,
    shear, shift of a few pixels) plus some that reach far outside the crop (border replicate)."""
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (40, 24, 94, 3)).astype(np.float32)
    theta = np.tile(IDENTITY_THETA, (40, 1)) + rng.normal(0, 0.08, (40, 6)).astype(np.float32)
    theta[30:] += rng.normal(0, 0.8, (10, 6)).astype(np.float32)
    want = AffineSampler()([images, theta]).numpy()
    got = affine_warp(images, theta)
    assert got.dtype == np.float32 and got.shape == images.shape
    assert np.abs(got - want).max() < 1e-5
    identity = np.tile(IDENTITY_THETA, (2, 1))
    assert np.abs(affine_warp(images[:2], identity) - images[:2]).max() < 1e-5
    # x_src = x_out + 2 pixels, the last two columns replicate the border
    shift = identity.copy()
    shift[:, 2] = 2 * 2.0 / 94
    out = affine_warp(images[:2], shift)
    assert np.abs(out[:, :, :-2] - images[:2, :, 2:]).max() < 1e-5
    assert np.abs(out[:, :, -2:] - images[:2, :, -1:]).max() < 1e-5


def _op_tensor_types(path: Path) -> list:
    """(signature key, op names, tensor types of every op's inputs and outputs) per subgraph."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model(str(path))
    keys = {d.subgraphIndex: d.signatureKey.decode() if isinstance(d.signatureKey, bytes) else d.signatureKey
            for d in model.signatureDefs}
    out = []
    for i, graph in enumerate(model.subgraphs):
        names, tensor_types = set(), set()
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            names.add(ops[max(code.builtinCode, code.deprecatedBuiltinCode)])
            tensor_types |= {types[graph.tensors[t].type] for t in list(op.inputs) + list(op.outputs) if t >= 0}
        out.append((keys.get(i), names, tensor_types))
    return out


def test_int8_stn_export_is_two_full_integer_signatures(exported) -> None:
    _, path = exported
    interp = tf.lite.Interpreter(model_path=str(path))  # TF's interpreter, as well as the edge one below
    assert interp.get_signature_list() == {
        "locate": {"inputs": ["image"], "outputs": ["theta_offset"]},
        "read": {"inputs": ["image"], "outputs": ["logits"]},
    }
    x = np.zeros((2, 24, 94, 3), np.int8)
    assert interp.get_signature_runner("locate")(image=x)["theta_offset"].shape == (2, 6)
    assert interp.get_signature_runner("read")(image=x)["logits"].shape == (2, 18, 68)
    graphs = _op_tensor_types(path)
    assert [key for key, _, _ in graphs] == ["locate", "read"]  # locate first: what a signature-less reader sees
    for key, names, tensor_types in graphs:
        assert not names & FLOAT_ISLAND_OPS, (key, names)
        assert not any(n.startswith("Flex") or n == "CUSTOM" for n in names), (key, names)
        assert tensor_types <= {"INT8", "INT32"}, (key, tensor_types)  # int32: biases and shapes only
    for runner in (interp.get_signature_runner("locate"), interp.get_signature_runner("read")):
        assert all(d["dtype"] == np.int8 for d in runner.get_input_details().values())
        assert all(d["dtype"] == np.int8 for d in runner.get_output_details().values())


def test_plate_reader_reads_through_the_two_stages(exported, crops) -> None:
    """theta within 1.5 output steps of the float STN's on average and 6 at most: rounding the output
    costs up to half a step (step = range of theta minus identity / 255, ~7e-4 here, 0.02 pixel at
    the crop's edge) and the localisation net's int8 activations (input step 1/128, ~1/256 of each
    range over four layers) add the rest (measured over six random models: 0.6-0.8 steps on average,
    1.6-4.3 at most). Logits within 2% of their spread on average of the float model's (context
    frozen on the same crops, as the export does; measured 0.13-0.15%): int8 steps on the input, on
    every activation (1/256 of its range) and on the logits (spread/255) add up over 20 layers."""
    model, path = exported
    reader = PlateReader(path, "kr", num_threads=1)
    assert reader.two_stage and reader.input_dtype == np.int8
    x = preprocess_batch(crops)
    locate, _, _ = stn_stages(model)
    want_theta = locate(x, training=False).numpy() + IDENTITY_THETA
    got_theta = reader.theta(x)
    assert np.abs(want_theta - IDENTITY_THETA).max() > 0.01  # the STN does move these crops
    step = reader._loc_out["quantization"][0]
    assert np.abs(got_theta - want_theta).mean() <= 1.5 * step
    assert np.abs(got_theta - want_theta).max() <= 6 * step
    want = freeze_context(model, x)(x, training=False).numpy()
    spread = want.max() - want.min()
    got = reader.logits(x)
    assert got.shape == want.shape and np.abs(got - want).mean() < 0.02 * spread
    assert np.abs(reader.logits(x[:1]) - got[:1]).max() < 1e-6  # batch of 1 after 16: same interpreter
    reads = reader.read(crops[:3] + [np.zeros((0, 5, 3), np.uint8)])
    assert len(reads) == 4 and all(isinstance(r, PlateRead) for r in reads) and reads[3] == PlateRead("", 0.0, False)


def test_min_max_ranges_and_float_exports_stay_as_they_were(tmp_path: Path, exported, crops) -> None:
    model, _ = exported
    x = preprocess_batch(crops[:4])
    mm = convert_to_tflite(model, tmp_path / "mm.tflite", "int8", calibration=x, percentile=None, logit_floor=None)
    assert PlateReader(mm, "kr").two_stage
    f32 = convert_to_tflite(model, tmp_path / "f32.tflite", "float32")
    reader = PlateReader(f32, "kr", num_threads=1)
    assert not reader.two_stage  # one graph, STN inside
    assert np.abs(reader.logits(x) - model(x, training=False).numpy()).max() < 1e-3


def test_bad_two_stage_models_give_one_line_errors(tmp_path: Path, exported) -> None:
    from tensorflow.lite.tools import flatbuffer_utils

    _, path = exported
    model = flatbuffer_utils.read_model(str(path))
    graphs = model.subgraphs
    model.subgraphs = [graphs[0]]
    model.signatureDefs = [model.signatureDefs[0]]
    locate_only = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    # 'read' returning theta [N, 6] instead of logits
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(merge_signatures([(LOCATE, locate_only), (READ, locate_only)]))
    with pytest.raises(AlprError, match=r"output shape \(1, 6\) does not match charset") as err:
        PlateReader(bad, "kr")
    assert "\n" not in str(err.value)
    # 'locate' alone: read as a one-graph model, whose output is no logits
    alone = tmp_path / "alone.tflite"
    alone.write_bytes(locate_only)
    with pytest.raises(AlprError, match="does not match charset"):
        PlateReader(alone, "kr")
    with pytest.raises(AlprError, match="2 subgraphs, expected 1"):
        merge_signatures([(LOCATE, path.read_bytes())])
