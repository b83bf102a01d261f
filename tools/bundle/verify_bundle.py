#!/usr/bin/env python3
"""Check an unpacked ALPR edge bundle against its manifest.json; optionally run the detection check.

    python verify_bundle.py            # every file's sha256 and size; exit 2 with one line if one differs
    python verify_bundle.py --check    # then detect.py on the bundled test image, plates compared with its labels

Standard library only (Python >= 3.8), so it runs before the virtual environment exists. install.sh
and the systemd unit (ExecStartPre) run it, so a model corrupted on the SD card stops the service
with a clear message instead of producing garbage detections.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

MANIFEST = "manifest.json"


class BundleError(Exception):
    """A one-line problem with the bundle."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(root: Path) -> Dict:
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"no {MANIFEST} in {root}: not an unpacked ALPR edge bundle")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path} is unreadable or corrupted ({exc})") from None


def problems(root: Path, manifest: Optional[Dict] = None) -> List[str]:
    """One line per file that is missing or whose size/sha256 differs from the manifest; models first."""
    manifest = manifest if manifest is not None else load_manifest(root)
    model_files = {m["file"]: role for role, m in manifest.get("models", {}).items()}
    found: List[str] = []
    for name, want in sorted(manifest.get("files", {}).items(), key=lambda kv: (kv[0] not in model_files, kv[0])):
        path = root / name
        what = f"model {name} ({model_files[name]})" if name in model_files else f"file {name}"
        if not path.is_file():
            found.append(f"{what} is missing")
            continue
        size = path.stat().st_size
        if size != want["size"]:
            found.append(f"{what} is corrupted: {size} bytes, the manifest says {want['size']}")
            continue
        digest = sha256_file(path)
        if digest != want["sha256"]:
            found.append(f"{what} is corrupted: sha256 {digest[:12]}... does not match the manifest's "
                         f"{want['sha256'][:12]}...")
    return found


def verify(root: Path) -> Dict:
    """Raise BundleError (one line) on the first problem; return the manifest when all files match."""
    manifest = load_manifest(root)
    found = problems(root, manifest)
    if found:
        more = f" (and {len(found) - 1} more problem(s))" if len(found) > 1 else ""
        raise BundleError(f"{found[0]}{more}: copy the bundle again")
    return manifest


def expected_plates(labels: Path) -> List[str]:
    """Plate texts of a YOLO label file whose plate lines carry the text as a 6th token."""
    if not labels.is_file():
        return []
    texts = []
    for line in labels.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 6:
            texts.append(parts[5])
    return texts


def check_detection(root: Path, manifest: Dict, python: str, strict: bool) -> int:
    """detect.py --lpr on the bundled test image; compare the plates it read with the image's labels."""
    readers = [m for m in manifest.get("models", {}).values() if m.get("charset")]
    charset = readers[0]["charset"] if readers else None
    image = root / manifest.get("test_image", "data/images/demo.jpg")
    with tempfile.TemporaryDirectory(prefix="alpr-check-") as out:
        cmd = [python, str(root / "detect.py"), "--images", str(image), "--output", out, "--json", "--dont_show"]
        if charset:
            cmd += ["--lpr", "--charset", charset]
        proc = subprocess.run(cmd, cwd=str(root), capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
            print(f"error: the detection check failed: {tail}", file=sys.stderr)
            return 1
        doc = json.loads((Path(out) / (image.stem + ".json")).read_text(encoding="utf-8"))
    found = [d for d in doc.get("detections", []) if d.get("class") == "license_plate"]
    plates = [(d.get("plate") or {}).get("text") or "" for d in found]
    want = expected_plates(image.with_suffix(".txt")) if charset else []
    hits = [t for t in want if t in plates]
    shown = plates if len(plates) <= 8 else plates[:8] + [f"... {len(plates) - 8} more"]
    print(f"check: {image.name}: {len(found)} plate(s) detected, read {shown}"
          + (f"; {len(hits)} of {len(want)} expected plate(s) read ({', '.join(want)})" if want else ""))
    if strict and want and len(hits) < len(want):
        print(f"error: expected plates not read: {', '.join(t for t in want if t not in hits)}", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Check an unpacked ALPR edge bundle against manifest.json.")
    p.add_argument("--root", default=os.path.dirname(os.path.abspath(__file__)), help="the bundle folder")
    p.add_argument("--check", action="store_true", help="also run detect.py on the bundled test image")
    p.add_argument("--strict", action="store_true", help="with --check: fail unless every labelled plate is read")
    p.add_argument("--python", default=sys.executable, help="interpreter for the check (the bundle's venv)")
    p.add_argument("--quiet", action="store_true", help="print nothing when all is well")
    args = p.parse_args(argv)
    root = Path(args.root).resolve()
    try:
        manifest = verify(root)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        models = ", ".join(f"{role} {m['quantization']} {m['input_size'][0]}x{m['input_size'][1]}"
                           for role, m in manifest.get("models", {}).items())
        print(f"bundle {manifest.get('version')}: {len(manifest.get('files', {}))} files match the manifest "
              f"({models})")
    if args.check:
        return check_detection(root, manifest, args.python, args.strict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
