"""Charset files and the Charset object (TF-free)."""
from __future__ import annotations

import pytest

from core.errors import AlprError
from lprnet.charset import CHARSETS_DIR, Charset, available_charsets, load_charset

CN_ORDER = (
    "京沪津渝冀晋蒙辽吉黑苏浙皖闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新"
    "0123456789ABCDEFGHJKLMNPQRSTUVWXYZIO-"
)


@pytest.mark.parametrize("name", ["cn", "kr"])
def test_every_shipped_charset_has_68_entries_blank_last(name: str) -> None:
    cs = load_charset(name)
    assert len(cs.tokens) == 68 and cs.num_classes == 68
    assert cs.blank == 67 and cs.tokens[67] == "-"
    assert len(set(cs.tokens)) == 68


def test_shipped_charsets_are_cn_and_kr() -> None:
    assert set(available_charsets()) >= {"cn", "kr"}
    assert (CHARSETS_DIR / "cn.txt").is_file()


def test_cn_is_in_lprnet_pytorch_order() -> None:
    assert "".join(load_charset("cn").tokens) == CN_ORDER


def test_kr_layout() -> None:
    cs = load_charset("kr")
    assert cs.tokens[:10] == tuple("0123456789")
    assert cs.tokens[10] == "가" and cs.tokens[49] == "호"
    assert cs.tokens[50] == "서울" and cs.tokens[66] == "제주"


def test_kr_encode_region_is_one_token() -> None:
    cs = load_charset("kr")
    ids = cs.encode("서울12가3456")
    assert ids == [50, 1, 2, 10, 3, 4, 5, 6]
    assert cs.decode(ids) == "서울12가3456"


def test_cn_encode_decode_roundtrip() -> None:
    cs = load_charset("cn")
    ids = cs.encode("京PL3N67")
    # letters skip I and O: A=41 ... H=48, J=49, K=50, L=51, M=52, N=53, P=54
    assert ids == [0, 54, 51, 34, 53, 37, 38]
    assert cs.decode(ids + [67]) == "京PL3N67"


def test_out_of_charset_raises_one_line() -> None:
    with pytest.raises(AlprError, match="'ñ'.*not in charset 'cn'"):
        load_charset("cn").encode("京Añ123")
    assert not load_charset("kr").can_encode("12X3456")
    assert not load_charset("kr").can_encode("")


@pytest.mark.parametrize(
    "text,valid",
    [("12가3456", True), ("123가4567", True), ("서울12가3456", True), ("인천86바3430", True),
     ("1가3456", False), ("12가345", False), ("가123456", False), ("서울서울12가3456", False)],
)
def test_kr_format(text: str, valid: bool) -> None:
    assert load_charset("kr").is_valid_format(text) is valid


@pytest.mark.parametrize(
    "text,valid",
    [("京PL3N67", True), ("粤BD12345", True), ("粤BDA1234", True), ("沪A12345F", True),
     ("京P3N67", False), ("京1L3N67", False), ("PL3N67京", False), ("京PL3N6789", False),
     ("浙D91186Y", False), ("粤BA12345", False)],
)
def test_cn_format(text: str, valid: bool) -> None:
    assert load_charset("cn").is_valid_format(text) is valid


def test_bad_charset_files(tmp_path) -> None:
    with pytest.raises(AlprError, match="unknown charset 'xx'"):
        load_charset("xx")
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n-\n", encoding="utf-8")
    with pytest.raises(AlprError, match="3 entries, expected 68"):
        load_charset(short)
    with pytest.raises(AlprError, match="duplicate"):
        Charset("d", tuple(["a"] * 68))
