"""tools.synth.mix: label files mixed into one training set without copying crops."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import AlprError
from tools.synth.mix import mix_lines, parse_source


def _source(folder: Path, texts) -> Path:
    folder.mkdir(parents=True)
    for t in texts:
        (folder / f"{t}.jpg").write_bytes(b"not decoded here")
    (folder / "labels.txt").write_text("".join(f"{t}.jpg\t{t}\tkr_white\t0\t1\n" for t in texts), encoding="utf-8")
    return folder / "labels.txt"


def test_mix_rebases_names_and_samples(tmp_path: Path) -> None:
    a = _source(tmp_path / "a", ["12가3456", "34나5678"])
    b = _source(tmp_path / "deep" / "b", [f"{i:02d}다1234" for i in range(10)])
    out = tmp_path / "mix" / "x"
    rows = mix_lines([(a, None), (b, 4)], out, seed=3)
    assert len(rows) == 6
    # every name, read from the output's folder, is the crop of that text; the extra columns are kept
    for row in rows:
        name, text, kind, ev, lines = row.split("\t")
        assert (out / name).resolve() == next(tmp_path.rglob(f"{text}.jpg")).resolve()
        assert (kind, ev, lines) == ("kr_white", "0", "1")
    assert rows[:2] == ["../../a/12가3456.jpg\t12가3456\tkr_white\t0\t1",
                        "../../a/34나5678.jpg\t34나5678\tkr_white\t0\t1"]
    drawn = [r.split("\t")[1] for r in rows[2:]]
    assert len(set(drawn)) == 4  # without replacement
    assert mix_lines([(a, None), (b, 4)], out, seed=3) == rows  # same seed, same draw
    assert any(mix_lines([(b, 4)], out, seed=s) != rows[2:] for s in range(4, 8))


def test_mix_errors(tmp_path: Path, repo_root: Path) -> None:
    a = _source(tmp_path / "a", ["12가3456"])
    with pytest.raises(AlprError, match="fewer than the 5"):
        mix_lines([(a, 5)], tmp_path, 0)
    (tmp_path / "a" / "12가3456.jpg").unlink()
    with pytest.raises(AlprError, match="image not found"):
        mix_lines([(a, None)], tmp_path, 0)
    assert parse_source(str(tmp_path / "a")) == (a, None)
    assert parse_source(f"{a}:2") == (a, 2)
    r = subprocess.run([sys.executable, "-m", "tools.synth.mix", "--out", str(tmp_path / "o.txt"), "missing:3"],
                       capture_output=True, text=True, cwd=repo_root, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == "error: label file not found: missing"
    assert not (tmp_path / "o.txt").exists()
