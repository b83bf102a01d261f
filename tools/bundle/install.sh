#!/usr/bin/env bash
# Install the ALPR edge bundle on the device: checksums, a virtual environment with
# requirements-edge.txt (no TensorFlow), a detection check on the bundled test image,
# and (with --service) the systemd unit.
#
#   ./install.sh [--python python3.8] [--venv DIR] [--system-opencv] [--service] [--no-check]
#
#   --python         interpreter for the venv (default: python3.8 if present, else python3; needs >= 3.8)
#   --venv           where to create it (default: <bundle>/.venv; run.sh expects that unless ALPR_PYTHON is set)
#   --system-opencv  use the system's OpenCV (JetPack's, built with GStreamer: needed for the CSI camera)
#                    instead of pip's opencv-python-headless (the venv then sees the system site-packages)
#   --service        install and enable alpr.service (uses sudo); settings in /etc/default/alpr
#   --no-check       skip the detection check
set -euo pipefail
BUNDLE="$(cd "$(dirname "$0")" && pwd)"
cd "$BUNDLE"
PYTHON=""
VENV="$BUNDLE/.venv"
SYSTEM_OPENCV=0
SERVICE=0
CHECK=1
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PYTHON="$2"; shift 2 ;;
    --venv) VENV="$2"; shift 2 ;;
    --system-opencv) SYSTEM_OPENCV=1; shift ;;
    --service) SERVICE=1; shift ;;
    --no-check) CHECK=0; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$PYTHON" ]; then
  if command -v python3.8 >/dev/null 2>&1; then PYTHON=python3.8; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' 2>/dev/null; then
  echo "error: $PYTHON is missing or older than 3.8 (on JetPack 4.6: sudo apt install python3.8 python3.8-venv)" >&2
  exit 2
fi

echo "install: [1/4] checking the bundle's checksums"
"$PYTHON" verify_bundle.py

echo "install: [2/4] virtual environment $VENV ($("$PYTHON" --version 2>&1))"
if [ "$SYSTEM_OPENCV" = 1 ]; then
  "$PYTHON" -m venv --system-site-packages "$VENV"
else
  "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

echo "install: [3/4] pip install -r requirements-edge.txt"
"$VPY" -m pip install -q --disable-pip-version-check --upgrade pip
REQS=requirements-edge.txt
if [ "$SYSTEM_OPENCV" = 1 ]; then
  "$VPY" -c 'import cv2' || { echo "error: --system-opencv: the system OpenCV is not importable by $PYTHON" >&2; exit 2; }
  REQS="$(mktemp)"
  trap 'rm -f "$REQS"' EXIT
  grep -v -i '^opencv' requirements-edge.txt > "$REQS"
fi
if ! "$VPY" -m pip install -q --disable-pip-version-check -r "$REQS"; then
  # e.g. Python 3.8 on x86_64: requirements-edge.txt asks for ai-edge-litert, which has no 3.8 wheel
  echo "install: requirements-edge.txt did not install; retrying with whichever TFLite interpreter has a wheel" >&2
  BASE="$(mktemp)"
  grep -v -i -E '^(tflite-runtime|tflite_runtime|ai-edge-litert|ai_edge_litert)' "$REQS" > "$BASE"
  "$VPY" -m pip install -q --disable-pip-version-check -r "$BASE"
  rm -f "$BASE"
  "$VPY" -m pip install -q --disable-pip-version-check tflite-runtime ||
    "$VPY" -m pip install -q --disable-pip-version-check ai-edge-litert ||
    { echo "error: no TFLite interpreter (tflite-runtime or ai-edge-litert) installs for $("$VPY" --version 2>&1)" >&2; exit 2; }
fi
"$VPY" -c 'from core.tflite_runtime import interpreter_class as c; k = c(); print("install: TFLite interpreter", k.__module__)'

if [ "$CHECK" = 1 ]; then
  echo "install: [4/4] detection check on the bundled test image"
  "$VPY" verify_bundle.py --quiet --check --python "$VPY"
else
  echo "install: [4/4] detection check skipped (--no-check)"
fi

if [ "$SERVICE" = 1 ]; then
  RUN_USER="${SUDO_USER:-$(id -un)}"
  echo "install: systemd unit alpr.service (user $RUN_USER)"
  sed -e "s|@BUNDLE@|$BUNDLE|g" -e "s|@USER@|$RUN_USER|g" alpr.service | sudo tee /etc/systemd/system/alpr.service >/dev/null
  if [ ! -f /etc/default/alpr ]; then sudo install -m 0644 alpr.env /etc/default/alpr; fi
  if [ "$VENV" != "$BUNDLE/.venv" ] && ! grep -q '^ALPR_PYTHON=' /etc/default/alpr; then
    echo "ALPR_PYTHON=$VPY" | sudo tee -a /etc/default/alpr >/dev/null
  fi
  sudo systemctl daemon-reload
  sudo systemctl enable alpr.service
  echo "install: edit /etc/default/alpr (camera), then: sudo systemctl start alpr; journalctl -u alpr -f"
fi
echo "install: done"
