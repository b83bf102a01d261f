#!/usr/bin/env bash
# Set up a workstation (or CI) for this project: CJK fonts for the plate renderer and for drawing
# plate text, then the Python packages. Usage: bash tools/setup.sh [--dev]
#   (default)  requirements.txt      : conversion, training, detect.py / detect_video.py
#   --dev      requirements-dev.txt  : the above plus pytest, hypothesis, ruff, vermin
set -euo pipefail
cd "$(dirname "$0")/.."
reqs=requirements.txt
[ "${1:-}" = "--dev" ] && reqs=requirements-dev.txt

have_fonts() {
  ls /usr/share/fonts/truetype/nanum/NanumGothic*.ttf >/dev/null 2>&1 &&
    ls /usr/share/fonts/truetype/wqy/wqy-microhei.ttc >/dev/null 2>&1
}
if ! have_fonts; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing fonts-nanum fonts-wqy-microhei (Hangul and Chinese glyphs)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-nanum fonts-wqy-microhei >/dev/null
  else
    echo "setup: warning: install the Debian/Ubuntu packages fonts-nanum and fonts-wqy-microhei" \
         "(needed by the plate renderer and to draw Hangul/Chinese text)" >&2
  fi
fi
echo "setup: pip install -r $reqs"
python -m pip install -q --disable-pip-version-check -r "$reqs"
