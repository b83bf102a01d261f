#!/usr/bin/env bash
# Start detect_video.py as configured in the env file (see alpr.env); what alpr.service runs.
# The bundle's checksums are verified first: a corrupted model stops the start with one line.
set -euo pipefail
BUNDLE="$(cd "$(dirname "$0")" && pwd)"
cd "$BUNDLE"
PY="${ALPR_PYTHON:-$BUNDLE/.venv/bin/python}"
"$PY" verify_bundle.py --quiet
EVENTS_DIR="${ALPR_EVENTS_DIR:-/var/lib/alpr}"
mkdir -p "$EVENTS_DIR"
# One events file per start (detect_video.py appends to --events): a restart's events are easy to find.
EVENTS="$EVENTS_DIR/events-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
if [ "${ALPR_CSI:-0}" = 1 ]; then
  SOURCE=(--csi --csi_sensor "${ALPR_CSI_SENSOR:-0}" --csi_size "${ALPR_CSI_SIZE:-1280x720}"
          --csi_fps "${ALPR_CSI_FPS:-30}" --csi_flip "${ALPR_CSI_FLIP:-0}")
elif [ -n "${ALPR_VIDEO:-}" ]; then
  SOURCE=(--video "$ALPR_VIDEO")
else
  echo "error: set ALPR_VIDEO (an RTSP URL, a file or a camera index) or ALPR_CSI=1 in the env file" >&2
  exit 2
fi
# shellcheck disable=SC2086  # ALPR_ARGS is a list of extra flags on purpose
exec "$PY" detect_video.py "${SOURCE[@]}" --dont_show --lpr --charset "${ALPR_CHARSET:-kr}" \
  --events "$EVENTS" ${ALPR_ARGS:-}
