"""Build the self-contained edge bundle for a Jetson (or any small Linux box): no TensorFlow needed.

    python tools/make_bundle.py                                   # the shipped int8 models
    python tools/make_bundle.py --detector X.tflite --reader Y.tflite [--reader_cn Z.tflite] --out alpr-edge.tar.gz

The archive holds one folder ``alpr-edge/``: the models under ``checkpoints/`` with the names the
edge runtime defaults to (so ``detect.py --lpr`` needs no model flags), their ``.json`` sidecars,
class and charset files, the edge-runtime code (the import closure of detect.py and
detect_video.py, checked to import with TensorFlow blocked), the two front ends,
requirements-edge.txt, the device files from tools/bundle/ (install.sh, run.sh, alpr.service, alpr.env,
README, verify_bundle.py), a test image and ``manifest.json`` (every file's sha256; each model's
size, input, quantization and converter versions; the bundle's version).
"""
from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core.errors import AlprError  # noqa: E402
from core.pipeline import DEFAULT_DETECTOR, DEFAULT_PROVINCE, DEFAULT_READER, check_paths, open_checks  # noqa: E402
from lprnet.province import CHARSET_FIELDS  # noqa: E402
from tools.bundle.verify_bundle import sha256_file  # noqa: E402  (the bundle checks with the same function)

TEMPLATE = REPO / "tools" / "bundle"
BUNDLE_DIR = "alpr-edge"  # the archive's top folder
ENTRY_POINTS = ("detect.py", "detect_video.py")
BLOCKED_TOP = ("tensorflow", "keras", "tf_keras")
# Where the edge runtime looks for its default models, relative to the bundle's root.
DETECTOR_NAME = DEFAULT_DETECTOR["tflite"].relative_to(REPO).as_posix()
READER_NAMES = {k: p.relative_to(REPO).as_posix() for k, p in DEFAULT_READER.items()}
# where each charset's checks go in the bundle: where the device's runtime looks for them by default
PROVINCE_NAMES = {k: tuple(p.relative_to(REPO).as_posix() for p in paths) for k, paths in DEFAULT_PROVINCE.items()}
DATA_FILES = ("requirements-edge.txt",)
DATA_DIRS = ("data/classes", "data/charsets")
TEST_IMAGE = ("data/images/demo.jpg", "data/images/demo.txt")
TEMPLATE_FILES = {"install.sh": 0o755, "run.sh": 0o755, "alpr.service": 0o644, "alpr.env": 0o644, "README.md": 0o644,
                  "verify_bundle.py": 0o755}
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class BundleReport:
    path: Path
    size_bytes: int
    version: str
    modules: List[str]
    files: List[str]
    models: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"wrote {self.path} ({self.size_bytes / 1e6:.2f} MB, {len(self.files)} files, "
                 f"{len(self.modules)} Python modules, version {self.version})"]
        for role, m in self.models.items():
            lines.append(f"  {role}: {m['file']} {m['size'] / 1e6:.2f} MB, input {m['input_shape']}, "
                         f"{m['quantization']}, sha256 {m['sha256'][:12]}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ import closure
def _module_file(name: str, root: Path) -> Optional[Path]:
    parts = name.split(".")
    base = root.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imported_names(path: Path, module: str) -> Set[str]:
    """Every module an ``import`` statement of the file names (module level and inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # ``from pkg import module``
    return {n for n in names if n}


def static_closure(entry_points: Sequence[Path], root: Path = REPO) -> Set[str]:
    """Repository modules reachable by import statements from the entry scripts (with their packages)."""
    found: Set[str] = set()
    todo: List[Tuple[str, Path]] = [(p.stem, p) for p in entry_points]
    seen_files: Set[Path] = set()
    while todo:
        module, path = todo.pop()
        if path in seen_files:
            continue
        seen_files.add(path)
        for name in _imported_names(path, module):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # the packages on the way, then the module itself
                sub = ".".join(parts[:i])
                f = _module_file(sub, root)
                if f is not None and sub not in found:
                    found.add(sub)
                    todo.append((sub, f))
    return found


_PROBE = r'''
import importlib, json, sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked: " + name)
        return None

sys.meta_path.insert(0, _Block())
root = sys.argv[1]
sys.path.insert(0, root)
failed = {}
for name in json.loads(sys.argv[2]):
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
loaded = sorted(n for n, m in list(sys.modules.items())
                if m is not None and (getattr(m, "__file__", None) or "").startswith(root))
tf = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
print(json.dumps({"failed": failed, "loaded": loaded, "tf": tf}))
'''


def edge_modules(root: Path = REPO, entry_points: Sequence[str] = ENTRY_POINTS) -> List[str]:
    """The edge-runtime modules the front ends need; AlprError if one of them needs TensorFlow.

    The static closure (every import statement, lazy ones included) is imported in a fresh
    interpreter where tensorflow/keras cannot be imported; the modules that import pulls in are
    added (dynamic imports), and any failure or any TensorFlow module loaded fails the build.
    """
    modules = static_closure([root / e for e in entry_points], root)
    probe = _PROBE.replace("BLOCKED", repr(BLOCKED_TOP))
    proc = subprocess.run([sys.executable, "-c", probe, str(root.resolve()) + os.sep, json.dumps(sorted(modules))],
                          capture_output=True, text=True, cwd=str(root), timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise AlprError(f"the import check of the edge runtime failed: {tail}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["failed"]:
        name, why = sorted(result["failed"].items())[0]
        more = f" (and {len(result['failed']) - 1} more)" if len(result["failed"]) > 1 else ""
        raise AlprError(f"edge module {name} does not import without TensorFlow: {why}{more}")
    if result["tf"]:
        raise AlprError(f"importing the edge runtime loaded {result['tf'][0]}: it must not import TensorFlow")
    loaded = {n for n in result["loaded"] if _module_file(n, root) is not None}
    return sorted(modules | loaded)


# ----------------------------------------------------------------------------------------- models
def _tensor_quant(detail: Dict[str, Any]) -> str:
    import numpy as np

    dtype = np.dtype(detail["dtype"]).name
    scale, zero = detail.get("quantization", (0.0, 0))
    return f"{dtype} (scale {scale:.6g}, zero point {zero})" if scale else dtype


def describe_model(path: Path) -> Dict[str, Any]:
    """What the manifest says about a model: checksum, size, tensors, quantization, converter versions."""
    from core.tflite_runtime import load_interpreter
    from lprnet.reader import LOCATE_SIGNATURE, READ_SIGNATURE

    interp = load_interpreter(path, 1)  # also rejects a file that is not a TFLite model
    inputs, outputs = interp.get_input_details(), interp.get_output_details()
    signatures = sorted(interp.get_signature_list()) if hasattr(interp, "get_signature_list") else []
    if {LOCATE_SIGNATURE, READ_SIGNATURE} <= set(signatures):  # a two-stage reader: describe its logits
        outputs = list(interp.get_signature_runner(READ_SIGNATURE).get_output_details().values())
    sidecar = path.with_name(path.name + ".json")
    source: Dict[str, Any] = {}
    if sidecar.is_file():
        try:
            source = dict(json.loads(sidecar.read_text(encoding="utf-8")).get("source", {}))
        except (ValueError, AttributeError) as exc:
            raise AlprError(f"cannot read model metadata {sidecar}: {exc}") from None
    quant = source.get("quantization", {})
    mode = quant.get("quantize_mode") if isinstance(quant, dict) else None
    if mode is None:  # no sidecar (the plate reader): infer from the tensors
        import numpy as np

        dtypes = {np.dtype(d["dtype"]).name for d in list(inputs) + list(outputs)}
        mode = "int8" if dtypes & {"int8", "uint8"} else "float"
    versions = {k: source[k] for k in ("tensorflow", "keras") if source.get(k)}
    if isinstance(quant, dict) and quant.get("tensorflow"):
        versions["tensorflow (conversion)"] = quant["tensorflow"]
    return {
        "source_file": path.name,
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
        "input_shape": [int(s) for s in inputs[0]["shape"]],
        "input_size": [int(inputs[0]["shape"][2]), int(inputs[0]["shape"][1])],  # width, height
        "input_type": _tensor_quant(inputs[0]),
        "output_types": [_tensor_quant(d) for d in outputs],
        "signatures": signatures,
        "quantization": mode,
        "converted_with": versions,
        "source": source,
        "sidecar": sidecar.name if sidecar.is_file() else None,
    }


# ------------------------------------------------------------------------------------------ build
def _git_commit(root: Path) -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(root), capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def default_version(root: Path = REPO) -> str:
    stamp = time.strftime("%Y.%m.%d-%H%M%S", time.gmtime())
    commit = _git_commit(root)
    return f"{stamp}+{commit}" if commit else stamp


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int, mtime: float) -> None:
    info = tarfile.TarInfo(f"{BUNDLE_DIR}/{name}")
    info.size, info.mode, info.mtime = len(data), mode, int(mtime)
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def _collect(detector: Path, readers: Dict[str, Path], root: Path, modules: Iterable[str],
             image: Sequence[Path], provinces: Optional[Dict[str, Tuple[Path, ...]]] = None
             ) -> Dict[str, Tuple[Path, int]]:
    """Bundle path -> (source file, mode)."""
    files: Dict[str, Tuple[Path, int]] = {}
    for name in modules:
        f = _module_file(name, root)
        assert f is not None
        files[f.relative_to(root).as_posix()] = (f, 0o644)
    for e in ENTRY_POINTS:
        files[e] = (root / e, 0o755)
    for f in DATA_FILES:
        files[f] = (root / f, 0o644)
    for d in DATA_DIRS:
        for f in sorted((root / d).iterdir()):
            if f.is_file() and not f.name.startswith("."):
                files[f"{d}/{f.name}"] = (f, 0o644)
    for f in image:
        files[f"data/images/{f.name}"] = (f, 0o644)
    models = [(DETECTOR_NAME, detector)] + [(READER_NAMES[k], p) for k, p in readers.items()]
    models += [(name, p) for k, paths in (provinces or {}).items() for name, p in zip(PROVINCE_NAMES[k], paths)]
    for name, src in models:
        files[name] = (src, 0o644)
        side = src.with_name(src.name + ".json")
        if side.is_file():
            files[name + ".json"] = (side, 0o644)
    for name, mode in TEMPLATE_FILES.items():
        files[name] = (TEMPLATE / name, mode)
    for name, (src, _) in files.items():
        if not src.is_file():
            raise AlprError(f"cannot bundle {name}: {src} not found")
    return files


def build_bundle(out: str | Path, detector: str | Path, reader: Optional[str | Path],
                 reader_cn: Optional[str | Path] = None, version: Optional[str] = None,
                 image: Optional[str | Path] = None, root: Path = REPO,
                 province_cn: Optional[str | Path | Sequence[str | Path]] = None,
                 province_kr: Optional[str | Path | Sequence[str | Path]] = None) -> BundleReport:
    """Write the bundle archive atomically; returns what went in. Raises AlprError on any problem.
    A reader goes with its charset's checks (``lprnet.province``: ``province_cn``, ``province_kr``, as
    ``core.pipeline.check_paths`` reads them, as many as the charset ships and in the same order; None: the
    shipped ones), which the runtime uses by default for that ``--charset``."""
    from core.cli import atomic_path

    detector = Path(detector)
    readers = {k: Path(p) for k, p in (("kr", reader), ("cn", reader_cn)) if p is not None}
    chosen = {"cn": province_cn, "kr": province_kr}
    for k, p in chosen.items():
        if p and k not in readers:
            raise AlprError(f"--province_{k} given without a {k} reader to check")
    provinces = {}
    for k in readers:
        try:
            paths = check_paths(chosen[k], k) if chosen[k] else DEFAULT_PROVINCE[k]
        except AlprError:  # "," names none: counted as none below (a bundle has no "none")
            paths = ()
        if len(paths) != len(DEFAULT_PROVINCE[k]):
            raise AlprError(f"--province_{k} names {len(paths)} check(s); the {k} reader's bundle takes "
                            f"{len(DEFAULT_PROVINCE[k])}, in the order of {', '.join(PROVINCE_NAMES[k])} (on the "
                            "device, --lpr_province none reads without them)")
        provinces[k] = paths
    roles = ([("detector", "detector", detector)]
             + [(f"reader ({k})", "reader" if k == "kr" else f"reader_{k}", p) for k, p in readers.items()]
             + [(f"province_{k} (the {k} reader's check)", f"province_{k}", p)
                for k, paths in provinces.items() for p in paths])
    for role, flag, p in roles:
        if not p.is_file():
            raise AlprError(f"{role} model not found: {p} (train/convert it first, or pass --{flag})")
    if not detector.with_name(detector.name + ".json").is_file():
        raise AlprError(f"{detector}: no {detector.name}.json sidecar beside it (written by convert_tflite.py)")
    image_files = [Path(image)] if image else [root / f for f in TEST_IMAGE]
    if image:
        labels = Path(image).with_suffix(".txt")
        if labels.is_file():
            image_files.append(labels)
    version = version or default_version(root)
    models = {"detector": dict(describe_model(detector), file=DETECTOR_NAME)}
    for k, p in readers.items():
        models[f"reader_{k}"] = dict(describe_model(p), file=READER_NAMES[k], charset=k)
    for k, paths in provinces.items():
        # a check without its .json, or of another charset's classes, would fail every start with that --charset
        # on the device
        try:
            checks = open_checks(k, paths, 1)
        except AlprError as exc:
            raise AlprError(f"{exc} (--province_{k})") from None
        # the device runs them in DEFAULT_PROVINCE's order, each from its default file name
        for i, (check, name) in enumerate(zip(checks, CHARSET_FIELDS[k])):
            if not check.is_field(name):
                raise AlprError(f"--province_{k}: check {i + 1}, {check.model_path}, is not a {name} check (its "
                                f"classes, what it follows or its line counts differ); give the {k} checks in the "
                                f"order {', '.join(CHARSET_FIELDS[k])}")
        for i, (p, name, check) in enumerate(zip(paths, PROVINCE_NAMES[k], checks)):
            # the threshold and gate a check's .json sets: a check without the gate costs about 1 ms on every read
            # it applies to (model card, session 43)
            models[f"province_{k}" + (f"_{i + 1}" if i else "")] = dict(
                describe_model(p), file=name, checks_reader=k, min_probability=check.min_probability,
                read_confidence_below=check.read_confidence_below)
    modules = edge_modules(root)
    files = _collect(detector, readers, root, modules, image_files, provinces)
    checksums = {name: {"sha256": sha256_file(src), "size": src.stat().st_size}
                 for name, (src, _) in sorted(files.items())}
    manifest = {
        "format": FORMAT_VERSION,
        "bundle": BUNDLE_DIR,
        "version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": _git_commit(root),
        "python": ">=3.8",
        "models": models,
        "test_image": f"data/images/{image_files[0].name}",
        "modules": modules,
        "files": checksums,
    }
    mtime = time.time()
    out = Path(out)
    with atomic_path(out, suffix=".tar.gz") as tmp:
        with tarfile.open(tmp, "w:gz", compresslevel=9) as tar:
            for name, (src, mode) in sorted(files.items()):
                _add_bytes(tar, name, src.read_bytes(), mode, mtime)
            data = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
            _add_bytes(tar, MANIFEST, data, 0o644, mtime)
    return BundleReport(path=out, size_bytes=out.stat().st_size, version=version, modules=modules,
                        files=sorted(files) + [MANIFEST], models=models)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--detector", default=str(DEFAULT_DETECTOR["tflite"]), help="detector .tflite (+ .json sidecar)")
    p.add_argument("--reader", default=str(DEFAULT_READER["kr"]), help="Korean plate reader .tflite")
    p.add_argument("--reader_cn", default=None,
                   help=f"Chinese plate reader .tflite (default: {DEFAULT_READER['cn']} when it exists)")
    p.add_argument("--province_cn", default=None, help="the Chinese reader's province and top-line letter checks, "
                   f"comma-separated .tflite files (+ .json; default: {', '.join(map(str, DEFAULT_PROVINCE['cn']))})")
    p.add_argument("--province_kr", default=None, help="the Korean reader's region, top-line digits and Hangul "
                   "letter checks, "
                   f"comma-separated .tflite files (+ .json; default: {', '.join(map(str, DEFAULT_PROVINCE['kr']))})")
    p.add_argument("--no_reader", action="store_true", help="detection only: bundle no plate reader")
    p.add_argument("--image", default=None, help="test image to bundle (default data/images/demo.jpg)")
    p.add_argument("--version", default=None, help="bundle version (default: UTC date + git commit)")
    p.add_argument("--out", default="alpr-edge.tar.gz", help="archive to write")
    args = p.parse_args(argv)
    reader_cn = args.reader_cn
    if reader_cn is None and DEFAULT_READER["cn"].is_file() and not args.no_reader:
        reader_cn = str(DEFAULT_READER["cn"])
    try:
        report = build_bundle(args.out, args.detector, None if args.no_reader else args.reader,
                              None if args.no_reader else reader_cn, args.version, args.image,
                              province_cn=args.province_cn, province_kr=args.province_kr)
    except AlprError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
