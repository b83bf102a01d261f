"""What the edge runtime must know about a converted detector, stored beside the model.

``save_model.py`` writes ``alpr_model.json`` into the SavedModel folder and ``convert_tflite.py``
writes ``<model>.tflite.json`` next to the TFLite file, so class names, input size and the yolo
heads' anchors travel with the model ("a converted COCO model just works").
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from core.errors import AlprError

SIDECAR_NAME = "alpr_model.json"
OUTPUT_DECODED = "decoded"  # boxes [B,N,4] (x1,y1,x2,y2 as fractions of the input) + scores [B,N,C]
OUTPUT_RAW = "raw"  # one tensor per yolo head [B,H,W,A*(5+C)]: decoded in numpy by core.yolo


@dataclass(frozen=True)
class YoloHead:
    grid: Tuple[int, int]  # (height, width) of the head's output
    anchors: Tuple[Tuple[float, float], ...]  # (w, h) in input pixels, the head's masked anchors
    scale_x_y: float = 1.0
    new_coords: bool = False


@dataclass(frozen=True)
class ModelInfo:
    input_size: Tuple[int, int]  # (width, height)
    class_names: Tuple[str, ...]
    heads: Tuple[YoloHead, ...]
    output: str = OUTPUT_DECODED
    letterbox: bool = True
    source: Dict[str, Any] = field(default_factory=dict)  # cfg/weights names, versions, quantization

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_candidates(self) -> int:
        return sum(h.grid[0] * h.grid[1] * len(h.anchors) for h in self.heads)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> ModelInfo:
        try:
            heads = tuple(YoloHead(grid=tuple(h["grid"]), anchors=tuple(tuple(a) for a in h["anchors"]),
                                   scale_x_y=float(h.get("scale_x_y", 1.0)),
                                   new_coords=bool(h.get("new_coords", False))) for h in d["heads"])
            return cls(input_size=tuple(d["input_size"]), class_names=tuple(d["class_names"]), heads=heads,
                       output=d.get("output", OUTPUT_DECODED), letterbox=bool(d.get("letterbox", True)),
                       source=dict(d.get("source", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise AlprError(f"model metadata is malformed ({exc!r})") from None

    def with_class_names(self, names: Sequence[str]) -> ModelInfo:
        if len(names) != self.num_classes:
            raise AlprError(
                f"the class file has {len(names)} names but the model predicts {self.num_classes} classes")
        return ModelInfo(self.input_size, tuple(names), self.heads, self.output, self.letterbox, self.source)


def sidecar_for(model_path: str | Path) -> Path:
    path = Path(model_path)
    return path / SIDECAR_NAME if path.is_dir() else path.with_name(path.name + ".json")


def load_model_info(model_path: str | Path) -> Optional[ModelInfo]:
    side = sidecar_for(model_path)
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AlprError(f"cannot read model metadata {side}: {exc}") from None
    return ModelInfo.from_dict(data)


def save_model_info(model_path: str | Path, info: ModelInfo) -> Path:
    from core.cli import atomic_path

    side = sidecar_for(model_path)
    with atomic_path(side) as tmp:
        tmp.write_text(info.to_json() + "\n", encoding="utf-8")
    return side


def read_class_names(path: str | Path) -> Tuple[str, ...]:
    """One class name per line; blank lines ignored."""
    path = Path(path)
    if not path.is_file():
        raise AlprError(f"class names file not found: {path}")
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except UnicodeDecodeError:
        raise AlprError(f"class names file is not UTF-8 text: {path}") from None
    if not names:
        raise AlprError(f"class names file is empty: {path}")
    return names
