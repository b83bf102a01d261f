"""Property-based: the cfg parser lets only the project's own error type escape."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.darknet.cfg import parse_cfg
from core.errors import AlprError
from tools.make_cfg import make_cfg

BASE = make_cfg("yolov4-tiny", 3, 416)
LINES = BASE.splitlines()


def _parse(text: str) -> None:
    try:
        parse_cfg(text)
    except AlprError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    _parse(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_as_text(data: bytes) -> None:
    _parse(data.decode("latin-1"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(LINES) - 1),
                          st.sampled_from(["delete", "dup", "value", "garbage"]),
                          st.text(max_size=12)), max_size=5))
def test_edits_of_a_real_cfg(edits) -> None:
    lines = list(LINES)
    for index, op, text in edits:
        if index >= len(lines):
            continue
        if op == "delete":
            del lines[index]
        elif op == "dup":
            lines.insert(index, lines[index])
        elif op == "value" and "=" in lines[index]:
            lines[index] = lines[index].split("=")[0] + "=" + text
        else:
            lines[index] = text
    _parse("\n".join(lines))
