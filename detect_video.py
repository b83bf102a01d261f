"""Run the ALPR pipeline on a video file, a camera, a network stream or a Jetson CSI camera.

    python detect_video.py --video road.mp4 --output out.mp4 --events events.jsonl
    python detect_video.py --video 0                                    # USB camera (a window where a display exists)
    python detect_video.py --video rtsp://10.0.0.5/stream --events /var/lib/alpr/events.jsonl
    python detect_video.py --csi --events events.jsonl                  # Jetson CSI camera

Each tracked vehicle's plate is reported once, with the best read voted across frames, as a JSON
Lines event (--events) and on stdout. A dropped network stream is reconnected with backoff;
Ctrl-C or SIGTERM closes the output video and the event file cleanly.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from core.app import define_model_flags  # noqa: E402
from core.cli import guarded  # noqa: E402
from core.tracking import DEFAULT_MIN_CONFIDENCE, EventFilter  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("video", None, "file, camera index, RTSP/HTTP URL or GStreamer pipeline")
flags.DEFINE_boolean("csi", False, "use the Jetson CSI camera (nvarguscamerasrc) instead of --video")
flags.DEFINE_integer("csi_sensor", 0, "CSI sensor id")
flags.DEFINE_string("csi_size", "1280x720", "CSI capture size WxH")
flags.DEFINE_integer("csi_fps", 30, "CSI frame rate")
flags.DEFINE_integer("csi_flip", 0, "CSI flip method (nvvidconv flip-method)")
define_model_flags(flags, lpr_default=True, tta_default=False)
flags.DEFINE_string("output", None, "annotated output video file")
flags.DEFINE_string("output_format", "mp4v", "FourCC codec of --output (mp4v, XVID, MJPG, ...)")
flags.DEFINE_string("events", None, "JSON Lines file of plate events (one per tracked vehicle), appended to")
flags.DEFINE_string("frames_json", None, "JSON Lines file with every frame's detections")
flags.DEFINE_integer("max_frames", None, "stop after this many frames")
flags.DEFINE_integer("report_after", None, "report a vehicle's plate after N frames instead of when it leaves")
flags.DEFINE_float("event_min_conf", DEFAULT_MIN_CONFIDENCE, "report a vehicle's plate only when the mean "
                   "confidence of its voted read is at least this (0: any)")
flags.DEFINE_boolean("event_invalid", False, "also report voted reads that do not fit the plate format "
                     "(every such read of the real test crops was wrong)")


def main(argv):
    from core.app import VideoJob, model_choice, run_video
    from core.errors import AlprError

    if FLAGS.csi:
        from core.video import csi_pipeline

        try:
            w, h = (int(v) for v in FLAGS.csi_size.lower().split("x"))
        except ValueError:
            raise AlprError(f"--csi_size {FLAGS.csi_size!r} is not WxH") from None
        source = csi_pipeline(FLAGS.csi_sensor, w, h, FLAGS.csi_fps, FLAGS.csi_flip)
    elif FLAGS.video:
        source = FLAGS.video
    else:
        raise AlprError("give --video (file, camera index, URL or GStreamer pipeline) or --csi")
    event_filter = EventFilter(FLAGS.event_min_conf, FLAGS.event_invalid)  # checks the range
    models = model_choice(FLAGS)
    job = VideoJob(video=source, models=models, output=FLAGS.output, output_format=FLAGS.output_format,
                   events=FLAGS.events, frames_json=FLAGS.frames_json, show=not FLAGS.dont_show,
                   max_frames=FLAGS.max_frames, report_after=FLAGS.report_after,
                   event_filter=event_filter)
    return run_video(job)


if __name__ == "__main__":
    sys.exit(app.run(guarded(main)))
