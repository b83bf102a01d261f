"""Darknet -> Keras -> SavedModel, and Keras -> Darknet ``.weights`` (the TF side of the converter)."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import keras
import numpy as np

from core.darknet.cfg import DarknetCfg, load_cfg
from core.darknet.weights import WeightsHeader, read_weights, write_weights
from core.errors import AlprError
from core.keras.builder import build_model
from core.keras.darknet_io import extract_darknet_weights, load_darknet_weights
from core.model_info import OUTPUT_DECODED, OUTPUT_RAW, ModelInfo, YoloHead, save_model_info


@dataclass
class ConvertedModel:
    cfg: DarknetCfg
    model: keras.Model
    header: WeightsHeader


def model_info_for(cfg: DarknetCfg, class_names: Sequence[str], output: str = OUTPUT_DECODED,
                   letterbox: bool = True, score_threshold: float = 0.25,
                   source: Optional[Dict[str, object]] = None) -> ModelInfo:
    if len(class_names) != cfg.num_classes:
        raise AlprError(
            f"the class file has {len(class_names)} names but {cfg.source} has classes={cfg.num_classes} "
            f"in its [yolo] layers")
    heads = tuple(
        YoloHead(grid=(cfg.shapes[y.index].height, cfg.shapes[y.index].width), anchors=y.masked_anchors,
                 scale_x_y=y.scale_x_y, new_coords=y.new_coords)
        for y in cfg.yolo_layers)
    src = dict(source or {})
    src.setdefault("score_threshold", score_threshold)
    return ModelInfo(input_size=(cfg.net.width, cfg.net.height), class_names=tuple(class_names),
                     heads=heads, output=output, letterbox=letterbox, source=src)


def load_darknet(cfg_path: str | Path, weights_path: Optional[str | Path] = None,
                 input_size: Optional[int] = None) -> ConvertedModel:
    """Build the Keras model of a cfg at ``input_size`` and load ``.weights`` into it (if given)."""
    cfg = load_cfg(cfg_path)
    if input_size:
        if input_size % 32:
            raise AlprError(f"--input_size {input_size} is not a multiple of 32")
        cfg = cfg.with_input_size(input_size)
    model = build_model(cfg)
    header = WeightsHeader()
    if weights_path is not None:
        header, weights = read_weights(weights_path, cfg)
        load_darknet_weights(model, cfg, weights)
    return ConvertedModel(cfg, model, header)


def save_darknet_weights(model: keras.Model, cfg: DarknetCfg, path: str | Path,
                         header: Optional[WeightsHeader] = None) -> None:
    """The way back: a Keras model built from ``cfg`` -> Darknet ``.weights`` (atomic write)."""
    write_weights(path, cfg, extract_darknet_weights(model, cfg), header)


def serving_function(model: keras.Model, info: ModelInfo):
    """A tf.function with the SavedModel's signature for ``info.output``."""
    import tensorflow as tf

    from core.keras.decode import decode_heads_tf

    w, h = info.input_size
    spec = tf.TensorSpec([None, h, w, 3], tf.float32, name="images")

    @tf.function(input_signature=[spec])
    def serve(images):
        outs = model(images, training=False)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        if info.output == OUTPUT_RAW:
            return {f"head_{i}": o for i, o in enumerate(outs)}
        boxes, scores = decode_heads_tf(outs, info.heads, info.num_classes, w, h)
        return {"boxes": boxes, "scores": scores}

    return serve


def export_saved_model(model: keras.Model, info: ModelInfo, out_dir: str | Path) -> Path:
    """Write a SavedModel (signature ``serving_default``) and its metadata; replaces ``out_dir`` atomically."""
    import tensorflow as tf

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        module = tf.Module()
        module.model = model
        module.serve = serving_function(model, info)
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.serve})
        save_model_info(tmp, info)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def run_keras(model: keras.Model, images: np.ndarray) -> list:
    outs = model(images, training=False)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    return [np.asarray(o) for o in outs]


REPO = Path(__file__).resolve().parents[2]
CFG_DIR = REPO / "data" / "cfg"
CLASSES_DIR = REPO / "data" / "classes"


def resolve_cfg(cfg: Optional[str], model: str = "yolov4", tiny: bool = False) -> Path:
    if cfg:
        return Path(cfg)
    path = CFG_DIR / f"{model}{'-tiny' if tiny else ''}.cfg"
    if not path.is_file():
        raise AlprError(f"no shipped cfg for --model {model}{' --tiny' if tiny else ''} ({path}); pass --cfg")
    return path


def resolve_classes(classes: Optional[str], num_classes: int) -> Sequence[str]:
    from core.model_info import read_class_names

    if classes:
        return read_class_names(classes)
    for candidate in ("custom.names", "coco.names"):
        names = read_class_names(CLASSES_DIR / candidate)
        if len(names) == num_classes:
            return names
    raise AlprError(f"the cfg has classes={num_classes}: pass --classes with {num_classes} names")


def convert_darknet(cfg: Optional[str], weights: Optional[str], output: Optional[str] = None,
                    model: str = "yolov4", tiny: bool = False, classes: Optional[str] = None,
                    input_size: Optional[int] = None, framework: str = "tf", score_thres: float = 0.25,
                    letterbox: bool = True, verify: bool = True, equalize_dataset: Optional[str] = None,
                    equalize_count: int = 100) -> str:
    """What ``save_model.py`` does; returns a short report. ``equalize_dataset``: images on which to
    equalize the heads' input channels before export (``core.keras.equalize``; for int8 conversion)."""
    cfg_path = resolve_cfg(cfg, model, tiny)
    if weights is not None and not Path(weights).is_file():
        raise AlprError(f"weights file not found: {weights}")
    converted = load_darknet(cfg_path, weights, input_size)
    names = resolve_classes(classes, converted.cfg.num_classes)
    output_kind = OUTPUT_RAW if framework == "tflite" else OUTPUT_DECODED
    w, h = converted.cfg.net.width, converted.cfg.net.height
    info = model_info_for(converted.cfg, names, output=output_kind, letterbox=letterbox,
                          score_threshold=score_thres,
                          source={"cfg": cfg_path.name, "weights": Path(weights).name if weights else None,
                                  "framework": framework, "tensorflow": _tf_version(),
                                  "keras": keras.__version__})
    out_dir = Path(output) if output else REPO / "checkpoints" / f"{cfg_path.stem}-{w}"
    equalized, change = (_equalize(converted, info, equalize_dataset, equalize_count)
                         if equalize_dataset is not None else ([], 0.0))
    export_saved_model(converted.model, info, out_dir)
    lines = [f"saved {out_dir} ({len(converted.cfg.layers)} layers, input {w}x{h}, "
             f"{info.num_classes} classes, {info.num_candidates} candidates, output={output_kind})"]
    lines += [f"equalized layer {e.layer}'s channels for conv {e.layer + 1}: widest range {e.widest:.3g}, "
              f"median {e.median:.3g}, largest factor {e.largest_factor:.3g}" for e in equalized]
    if equalized:
        lines.append(f"equalized float outputs: max |change| = {change:.3g} on one calibration image")
    if verify:
        diff = verify_saved_model(converted.model, info, out_dir)
        lines.append(f"verified: SavedModel vs Keras max |diff| = {diff:.3g}")
    return "\n".join(lines)


def _equalize(converted: ConvertedModel, info: ModelInfo, dataset: str, count: int) -> Tuple[list, float]:
    """Equalize in place; returns what was done and the largest change of any float output on one image."""
    from core.keras.equalize import channel_ranges, equalize, head_input_layers
    from core.keras.tflite_export import calibration_paths, load_calibration_tensors

    if count < 1:  # checked before the images are looked for
        raise AlprError(f"--equalize_count must be at least 1 (got {count})")
    layers = head_input_layers(converted.cfg)
    if not layers:
        raise AlprError(f"{converted.cfg.source}: no head input to equalize (each [yolo] layer's conv must "
                        f"read a leaky, relu or linear conv that nothing else reads)")
    images, _ = load_calibration_tensors(calibration_paths(dataset, "--equalize_dataset"), info, count)
    before = [np.asarray(o) for o in converted.model([images[0]])]
    done = equalize(converted.model, converted.cfg, channel_ranges(converted.model, converted.cfg, layers, images))
    after = [np.asarray(o) for o in converted.model([images[0]])]
    change = max(float(np.abs(a - b).max()) for a, b in zip(after, before))
    info.source["equalized"] = {"layers": [e.layer for e in done], "images": len(images)}
    return done, change


def verify_saved_model(model: keras.Model, info: ModelInfo, out_dir: str | Path, seed: int = 0) -> float:
    """Max |diff| between the reloaded SavedModel's signature and the in-memory Keras model."""
    import tensorflow as tf

    w, h = info.input_size
    x = np.random.default_rng(seed).uniform(0, 1, (1, h, w, 3)).astype(np.float32)
    fn = tf.saved_model.load(str(out_dir)).signatures["serving_default"]
    got = {k: v.numpy() for k, v in fn(images=tf.constant(x)).items()}
    want = {k: v.numpy() for k, v in serving_function(model, info)(tf.constant(x)).items()}
    if set(got) != set(want):
        raise AlprError(f"the SavedModel's outputs {sorted(got)} differ from the model's {sorted(want)}")
    return float(max(np.abs(got[k] - want[k]).max() for k in got))


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__
