#!/usr/bin/env bash
# Set up a workstation (or CI) for this project: CJK fonts for the plate renderer and for drawing
# plate text, then the Python packages. Usage: bash tools/setup.sh [--dev]
#   (default)  requirements.txt      : conversion, training, detect.py / detect_video.py
#   --dev      requirements-dev.txt  : the above plus pytest, hypothesis, ruff, vermin
set -euo pipefail
cd "$(dirname "$0")/.."
reqs=requirements.txt
[ "${1:-}" = "--dev" ] && reqs=requirements-dev.txt

# nanum + wqy-microhei: the renderer's and the drawing's Hangul and Chinese glyphs; wqy-zenhei +
# noto-cjk: the further faces the shipped readers were trained with, which the training recipes require
FONT_PACKAGES="fonts-nanum fonts-wqy-microhei fonts-wqy-zenhei fonts-noto-cjk"
have_fonts() {
  ls /usr/share/fonts/truetype/nanum/NanumGothic*.ttf >/dev/null 2>&1 &&
    ls /usr/share/fonts/truetype/wqy/wqy-microhei.ttc /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc >/dev/null 2>&1 &&
    ls /usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc >/dev/null 2>&1
}
if ! have_fonts; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing $FONT_PACKAGES (Hangul and Chinese glyphs)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $FONT_PACKAGES >/dev/null
  else
    echo "setup: warning: install the Debian/Ubuntu packages $FONT_PACKAGES" \
         "(needed by the plate renderer, the training recipes and to draw Hangul/Chinese text)" >&2
  fi
fi
echo "setup: pip install -r $reqs"
python -m pip install -q --disable-pip-version-check -r "$reqs"
