"""Evaluate a detector on images with YOLO txt labels: mAP@0.5 and mAP@0.5:0.95 per class, PR curves.

    python evaluate.py --weights checkpoints/yolov4-tiny-3l-alpr-544-int8.tflite --framework tflite --size 544 \
        --classes data/classes/custom.names --dataset runs/heldout --json runs/eval.json

--framework tflite takes a .tflite file (no TensorFlow needed); --framework tf a SavedModel folder,
or a Darknet .weights file together with --cfg. --size must match a converted model's input size
(it may be left out); for .weights it is the size the network is built at. The PR curves (IoU 0.5)
go to --pr_curves (default: beside --json, else runs/eval/pr_curves.png).

With --lpr --lpr_weights READER.tflite --charset kr|cn, the plates whose labels carry their text
(the sixth token) are also read: a plate counts as read when a plate detection (score >= --lpr_score)
overlaps it with IoU >= 0.5 and its crop reads exactly as the label. The counts are also printed (and
written to --json) by the labelled plate's height in pixels, for narrow (maybe two-line) and wide plates.
The reads use the charset's shipped checks (cn: province, then the top-line letter of two-line plates; kr: region,
then the top-line digits of two-line plates, then the Hangul letter of one-line plates) unless --lpr_province says
otherwise; --json records the reader, its options and the checks under "lpr_reader".
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from core.cli import guarded  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("weights", None, "model: .tflite file, SavedModel folder, or Darknet .weights (with --cfg)")
flags.DEFINE_enum("framework", "tflite", ["tf", "tflite"], "backend")
flags.DEFINE_integer("size", None, "network input size (checked against a converted model; builds .weights models)")
flags.DEFINE_string("classes", "data/classes/custom.names", "class names file")
flags.DEFINE_string("dataset", None, "folder of images with YOLO txt labels beside them, or a list file")
flags.DEFINE_string("cfg", None, "Darknet cfg, for --weights *.weights")
flags.DEFINE_string("json", None, "write the metrics as JSON here")
flags.DEFINE_string("pr_curves", None, "PNG of the precision-recall curves")
flags.DEFINE_float("score", 0.001, "score threshold (low: mAP needs the whole PR curve)")
flags.DEFINE_float("iou", 0.5, "NMS IoU threshold")
flags.DEFINE_integer("max_images", None, "evaluate the first N images only")
flags.DEFINE_integer("threads", None, "interpreter threads")
flags.DEFINE_boolean("lpr", False, "also measure the plate-read accuracy of detector + reader")
flags.DEFINE_string("lpr_weights", None, "LPRNet TFLite reader, for --lpr")
flags.DEFINE_string("charset", "kr", "reader charset name or file, for --lpr")
flags.DEFINE_string("lpr_province", None, "checks of the reads, for --lpr (lprnet.province: province and "
                    "top-line letter (cn), region, top-line digits and Hangul letter (kr); comma-separated "
                    ".tflite files, run in order; default: the shipped ones for --charset; 'none': no check)")
flags.DEFINE_float("lpr_score", 0.25, "plate detections read with --lpr score at least this")
flags.DEFINE_float("crop_pad", None, "plate crops grow by this fraction of their size on each side "
                   "(default: the runtime's, core.plate_reading.PLATE_PAD)")
flags.DEFINE_boolean("lpr_retry", True, "read weak reads again from a taller crop, and narrow ones with other "
                     "line cuts, as detect.py does")
flags.DEFINE_boolean("lpr_tta", True, "read each plate also zoomed in and out, as the runtime does")
flags.DEFINE_string("lpr_home_region", None, "the province (cn) or region (kr) the reads lean to, or several "
                    "comma-separated, for --lpr, as detect.py --home_region (lprnet.home; default: none)")
flags.DEFINE_float("lpr_home_weight", None, "how much they lean, as detect.py --home_weight (default: 10)")
flags.mark_flags_as_required(["weights", "dataset"])


def main(argv):
    from pathlib import Path

    from core.errors import AlprError
    from core.evaluation import evaluate_dataset, open_backend, plot_pr_curves, size_table, write_json
    from core.model_info import read_class_names
    from lprnet.home import home_record
    from lprnet.province import check_record

    if len(argv) > 1:
        raise AlprError(f"unexpected arguments: {' '.join(argv[1:])}")
    reader = None
    if FLAGS.lpr_home_region and not FLAGS.lpr:
        raise AlprError("--lpr_home_region leans the plate reads: it needs --lpr")
    if FLAGS.lpr_home_weight is not None and not (FLAGS.lpr_home_region or "").strip():
        raise AlprError("--lpr_home_weight sets how much the reads lean to --lpr_home_region: give it too")
    if FLAGS.lpr:
        if not FLAGS.lpr_weights:
            raise AlprError("--lpr needs --lpr_weights (an LPRNet .tflite reader)")
        if not Path(FLAGS.lpr_weights).is_file():
            raise AlprError(f"reader not found: {FLAGS.lpr_weights}")
        from core.pipeline import open_plate_reader

        reader = open_plate_reader(FLAGS.lpr_weights, FLAGS.charset, FLAGS.threads, tta=FLAGS.lpr_tta,
                                   retry_cuts=FLAGS.lpr_retry, province=FLAGS.lpr_province,
                                   home_region=FLAGS.lpr_home_region, home_weight=FLAGS.lpr_home_weight)
    names = read_class_names(FLAGS.classes)
    backend = open_backend(FLAGS.weights, FLAGS.framework, names, FLAGS.size, FLAGS.cfg, FLAGS.threads)
    report = evaluate_dataset(backend, FLAGS.dataset, names, FLAGS.score, FLAGS.iou, FLAGS.max_images,
                              reader=reader, lpr_score=FLAGS.lpr_score, crop_pad=FLAGS.crop_pad,
                              lpr_retry=FLAGS.lpr_retry)
    report.extra.update({"weights": str(FLAGS.weights), "framework": FLAGS.framework, "dataset": str(FLAGS.dataset)})
    if reader is not None:  # how the plates were read: the reader, its options and its checks, in order
        checks = reader.province
        report.extra["lpr_reader"] = {
            "weights": str(FLAGS.lpr_weights), "charset": FLAGS.charset, "tta": FLAGS.lpr_tta,
            "retry": FLAGS.lpr_retry, "lpr_score": FLAGS.lpr_score, "crop_pad": FLAGS.crop_pad,
            **check_record(checks), **home_record(reader.home)}
    print(report.table())
    print(f"{report.images} images in {report.seconds:.1f} s"
          + (f"; {len(report.skipped)} unreadable, skipped (first: {report.skipped[0][0]})" if report.skipped else "")
          + (f"; {report.dataset_problems} bad label lines skipped" if report.dataset_problems else ""))
    if "lpr" in report.extra:
        r = report.extra["lpr"]
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        print(f"plates with text: {r['plates']}, found: {r['found']}, read exactly: {r['read']} (accuracy {acc})")
        if r["by_size"]:
            print("by the labelled plate's shape and height:\n" + size_table(r["by_size"]))
    if FLAGS.json:
        print(f"wrote {write_json(report, FLAGS.json)}")
    png = FLAGS.pr_curves or (str(Path(FLAGS.json).with_suffix("")) + "_pr.png" if FLAGS.json
                              else "runs/eval/pr_curves.png")
    print(f"wrote {plot_pr_curves(report, png)}")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(guarded(main)))
