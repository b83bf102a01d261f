"""tools.event_filter_check's table, on rows counted by hand."""
from __future__ import annotations

from core.tracking import Read
from tools.event_filter_check import table


def test_table_counts_by_hand() -> None:
    # (valid, confidence, right): a confident right read, a faint right read, a confident wrong invalid
    # read, a faint wrong valid read
    rows = [(Read("A", 0.9, True), True), (Read("B", 0.08, True), True), (Read("C", 0.6, False), False),
            (Read("D", 0.02, True), False)]
    lines = table(rows, [0.0, 0.1])
    cells = [line.split() for line in lines[1:3]]
    # threshold 0: any read keeps 4 (2 right, 2 wrong); valid only keeps 3 (2 right, 1 wrong)
    assert cells[0] == ["0", "4", "2", "2", "3", "2", "1"]
    # threshold 0.1: any read keeps 2 (1 right, 1 wrong); valid only keeps 1 (1 right)
    assert cells[1] == ["0.1", "2", "1", "1", "1", "1", "0"]
    assert lines[3] == "format-invalid reads: 1 of 4, right: 0"


def test_threshold_outside_0_1_names_the_tool_flag() -> None:
    """A threshold the filter would refuse is this tool's one-line error, naming --thresholds (not
    detect_video.py's --event_min_conf), before any crop is read."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for value in ("2", "-0.1", "nan"):
        proc = subprocess.run([sys.executable, "-m", "tools.event_filter_check", "--thresholds", f"0.1,{value}",
                               "--charset", "cn", "--images", "/nonexistent"],
                              cwd=repo, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [f"error: --thresholds: {value!r} is not in [0, 1]"]


def test_home_region_reads_lean_and_needs_a_charset() -> None:
    """--home_region without --charset is a one-line error; with it the tool's reads lean to the home: on the real
    Chinese crops (475 of 493 from Anhui, most misreads their province; model card, session 44) leaning to 皖 reads
    more of them right."""
    import subprocess
    import sys
    from pathlib import Path

    import pytest

    from tests.paths import shared_path
    from tools.event_filter_check import read_rows

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "tools.event_filter_check", "--home_region", "皖"],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --images, --weights and --home_region need --charset"]
    weights = repo / "checkpoints" / "lprnet-cn-int8.tflite"
    if not weights.is_file():
        pytest.skip("the shipped Chinese reader is missing")
    crops = str(shared_path("data", "cn_plates_dev"))
    plain, leaned = (read_rows("cn", crops, str(weights), home) for home in (None, "皖"))
    assert len(plain) == len(leaned) == 493
    assert sum(right for _, right in leaned) >= sum(right for _, right in plain) + 10
