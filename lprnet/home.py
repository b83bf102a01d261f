"""A home-region prior for the plate reads (edge runtime, TF-free): most plates a fixed camera sees come from the
province (cn) or region (kr) it stands in, as ALPR products' region settings assume.

With a ``HomeRegion`` the reader multiplies each frame's probability of the home token by ``weight`` and
renormalises the frame before CTC decoding (``lean_logits``), and each check whose classes hold the token (the
Chinese province check, the Korean region check) does the same to its class probabilities before its threshold
(``lean_probs``). A read unsure of its province then leans to the home one, and a few unsure plates from elsewhere
are pulled to it too. Off unless asked for (``--home_region``). The reads' confidences are the leaned ones.
Several homes (``--home_region 皖,苏``, a camera near a border) are each leaned to alike; ``--home_weight`` sets the
weight (since session 47).

The weight, 10, was chosen in session 44 (checkpoints/MODEL_CARD.md): on the real Chinese crops (475 of 493 from
Anhui) with home 皖 it read 459 instead of 442, none of the others lost; on never-used renders all from Anhui
1,914 of 2,000 instead of 1,872 (43 put right, 1 broken), and on a uniform render one plate from elsewhere was lost
in 1,927.
"""
from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from core.errors import AlprError
from lprnet.charset import CN_PROVINCES, KR_REGIONS, Charset

HOME_WEIGHT = 10.0


@dataclass(frozen=True)
class HomeRegion:
    """The home token (a Chinese province character or a Korean region name), or several separated by commas (a
    camera near a border: each is leaned to alike), and how much more likely each is than the reader or a check
    alone would say."""

    token: str
    weight: float = HOME_WEIGHT

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight >= 1.0):
            raise AlprError(f"home region weight must be a finite number >= 1, got {self.weight}")
        parts = self.token.split(",")
        if not all(parts):
            raise AlprError(f"home region {self.token!r}: an empty name between commas")
        if len(set(parts)) != len(parts):
            raise AlprError(f"home region {self.token!r} names one region twice")

    @property
    def tokens(self) -> Tuple[str, ...]:
        """The home tokens, in the order given."""
        return tuple(self.token.split(","))

    def check_charset(self, charset: Charset) -> None:
        """AlprError unless ``charset`` has every home token among the ones a home may name (``home_tokens``)."""
        allowed = home_tokens(charset)
        for token in self.tokens:
            if token not in allowed:
                raise AlprError(_not_a_home(token, charset))

    def lean_logits(self, scores: np.ndarray, charset: Charset) -> np.ndarray:
        """Logits or log-probabilities [..., classes] with log(weight) added at each home token's class: after a
        softmax, each frame's probability of it times ``weight``, the frame renormalised. A copy. (A token that
        spans several frames is leaned at each of them, so its paths gain up to ``weight`` per frame.)"""
        self.check_charset(charset)
        out = np.array(scores, np.float32, copy=True)
        for token in self.tokens:
            out[..., charset.tokens.index(token)] += np.float32(math.log(self.weight))
        return out

    def lean_probs(self, probs: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """Class probabilities [N, classes] with each home token's times ``weight``, each row renormalised; as they
        are (not copied) when ``classes`` lack every home token."""
        present = self.present(classes)
        if not present:
            return probs
        out = np.array(probs, np.float32, copy=True)
        for token in present:
            out[:, list(classes).index(token)] *= np.float32(self.weight)
        return out / np.maximum(out.sum(axis=1, keepdims=True), np.float32(1e-30))

    def present(self, classes: Sequence[str]) -> Tuple[str, ...]:
        """The home tokens among ``classes`` (a check's), in the order given."""
        return tuple(t for t in self.tokens if t in classes)


_HOMES = frozenset(CN_PROVINCES) | frozenset(KR_REGIONS)  # whole tokens: CN_PROVINCES is one string


def home_tokens(charset: Charset) -> Tuple[str, ...]:
    """The tokens of ``charset`` a home region may name: the Chinese provinces and Korean regions it spells."""
    return tuple(t for t in charset.tokens if t in _HOMES)


def _not_a_home(token: str, charset: Charset) -> str:
    allowed = home_tokens(charset)
    if not allowed:
        return f"home region {token!r}: charset {charset.name!r} has no province or region to lean to"
    kind = "province" if charset.name == "cn" else "region" if charset.name == "kr" else "province or region"
    return f"home region {token!r} is not a {kind} of charset {charset.name!r} (one of: {' '.join(allowed)})"


_SEPARATORS = "\uff0c\u3001"  # the full-width comma and the ideographic comma, as a Chinese keyboard types them


def parse_home(value: Optional[str], charset: Charset, weight: Optional[float] = None) -> Optional[HomeRegion]:
    """``--home_region``'s value: None or empty for none, else one or more of ``home_tokens(charset)`` separated
    by commas (NFC-normalised, so Hangul typed as separate jamo matches too; spaces around a name are dropped).
    ``weight``: ``--home_weight`` (None: ``HOME_WEIGHT``), which needs a home."""
    if value is None or not value.strip():
        if weight is not None:
            raise AlprError("--home_weight sets how much the reads lean to --home_region: give a home region too")
        return None
    text = unicodedata.normalize("NFC", value)
    for sep in _SEPARATORS:
        text = text.replace(sep, ",")
    home = HomeRegion(",".join(part.strip() for part in text.split(",")), HOME_WEIGHT if weight is None else weight)
    home.check_charset(charset)
    return home


def home_record(home: Optional[HomeRegion]) -> Dict[str, Any]:
    """The home region of a measurement, for its JSON record: token(s) (comma-separated) and weight, both None
    without one."""
    return {"home_region": None if home is None else home.token, "home_weight": None if home is None else home.weight}
