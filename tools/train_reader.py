"""One command that trains a plate reader from synthetic crops: ``python -m tools.train_reader --charset kr
--out runs/reader_kr``.

It renders the training mix, a validation set and (unless ``--heldout`` names one) a held-out set with
``tools.synth.plates``, trains LPRNet + STN with ``train_lprnet.py`` (kr from random initialisation, cn from
the shipped Korean reader: ``INIT_WEIGHTS``, ``--init_weights``), exports int8 and float16 TFLite with
``lprnet.export`` and scores them with ``lprnet.evaluate`` (held-out crops, and the real crops of
``../shared``, or ``$ALPR_SHARED``, when they are there). Every step prints its command. Rendering is skipped
for a set that exists, training resumes from its last epoch (and is skipped when it has run ``--epochs``), a
model is exported again only when the weights are newer; so after an interruption the same command continues.
``--scale`` shrinks every set (a smoke run: ``--scale 0.002 --epochs 1 --refresh_epochs 0``).
``OUT/recipe.json`` records the charset, scale, font faces found and schedule (epochs, batch size, learning
rate, precision) and the weights it started from, by sha256; a run with any of them different in the same
folder is refused rather than mixed. The faces of ``RECIPE_FONTS`` must be installed (``bash tools/setup.sh``;
``--allow_fewer_fonts`` renders without them).

Then (``--refresh_epochs``, 3 by default) the refresh stage continues the trained model for a
few epochs on a fresh render of the same mix, at a lower rate, in ``OUT/refresh/``; the models are exported
from its weights. A folder trained before the stage existed continues with it. For cn a quarter of that render
is lit as at night (``--refresh_night``, ``REFRESH_NIGHT``); a refresh stage started by day goes on by day.

The mixes (``RECIPES``) are the make-up of the shipped readers' last runs: every kind with and without
oblique views, plus extra crops of the kinds with the most errors (the commercial and two-line plates).
Seeds 7001+ (kr) and 7101+ (cn), and 7011+ / 7111+ for the refresh stage, are used by nothing else;
validation and held-out sets use the seeds of the model card (kr 9002 / 9001, cn 9013 / 9014).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from absl import app, flags

from core.errors import AlprError
from core.keras import PRECISIONS
from lprnet.evaluate import MIN_CHAR_PX
from tools.bundle.verify_bundle import sha256_file
from tools.recipe import REPO, SHARED, check_recipe, newer, recorded, run_recipe, run_step, scaled

# (name, count, extra tools.synth.plates arguments)
Part = Tuple[str, int, Tuple[str, ...]]
RECIPES: Dict[str, List[Part]] = {
    "kr": [
        ("mixed", 14000, ()),
        ("oblique", 8000, ("--shear", "0.25")),
        ("yellow", 6000, ("--kind", "kr_yellow")),
        ("yellow2", 6000, ("--kind", "kr_yellow2")),
        ("green2", 4000, ("--kind", "kr_green2")),
        ("white_old", 2000, ("--kind", "kr_white_old")),
    ],
    "cn": [
        ("mixed", 10000, ()),
        ("variants", 10000, ("--font_variants",)),
        ("oblique", 12000, ("--shear", "0.35", "--font_variants")),
        ("yellow2", 4000, ("--kind", "cn_yellow2")),
        ("green", 4000, ("--kind", "cn_green")),
    ],
}
SEEDS = {"kr": 7001, "cn": 7101}


class Schedule(NamedTuple):
    epochs: int
    precision: str


# The schedule each recipe was measured with (model card). kr, session 19: bfloat16 for 16 epochs,
# 92 minutes, int8 held-out 0.9265 (float32 for 13: 105 minutes, 0.922). cn, session 13: float32 for 13
# epochs, 102 minutes, 0.858; in bfloat16 for 16 (session 20) it sat on the CTC loss's first plateau for
# 6 epochs and read nothing after 130 minutes, while a 10,000-crop A/B of the two precisions left it in
# both by epoch 2: no cause found, so cn kept the schedule that trained, until session 29. kr in 12 epochs
# without the refresh stage (session 26): 127 minutes, held-out 0.9405, real 7 of 14 (run 15: 0.9465, 11),
# so not the default.
# cn since session 29: from the shipped Korean reader's weights (INIT_WEIGHTS; its features carry over, the
# class channels are relearned), which skips the plateau (validation sequence accuracy 0.575 after epoch 1
# against 0.061 from random initialisation in session 28), and so in bfloat16 for 18 epochs: 95.2 minutes,
# int8 held-out 0.924 and real 0.872, against run 12's 0.9135 and 0.860; with the refresh stage (3 epochs,
# 18.8 minutes more) 0.924 and 0.886, shipped as cn run 16.
SCHEDULES: Dict[str, Schedule] = {"kr": Schedule(16, "mixed_bfloat16"), "cn": Schedule(18, "mixed_bfloat16")}
# Weights each recipe starts from, under the repository; None: random initialisation. The cn recipe thus
# depends on the Korean file shipped at the time (recipe.json records its sha256): run 16 started from run 15.
INIT_WEIGHTS: Dict[str, Optional[str]] = {"kr": None, "cn": "checkpoints/lprnet-kr.weights.h5"}
# The refresh stage: the trained model continues for a few epochs on fresh crops of the same make-up (seeds
# REFRESH_SEEDS+), at REFRESH_LR_SHARE of the peak rate, from its best weights. kr, session 25: 3 epochs
# lifted the recipe's model from 9 to 11 of the 14 real crops at the same held-out score (0.9475 / 0.9465)
# in 30 minutes, and that model ships (model card, run 15). cn, session 29: 3 epochs took the recipe's model
# from 430 to 437 of the 493 real crops at the same held-out score (1,848 of 2,000), and that model ships (run 16).
REFRESH_EPOCHS = {"kr": 3, "cn": 3}
REFRESH_SEEDS = {"kr": 7011, "cn": 7111}
REFRESH_LR_SHARE = 0.3
# The share of the refresh stage's crops rendered under a night light (tools.synth.plates --night). cn, session
# 46: 0.25 made run 18, which ships (held-out 0.9435, real 452 of 493, night renders of seed 9347 0.872 against
# run 16's 0.614), in the recipe's 2 hours; kr has no real night crops to check a share against, so none.
REFRESH_NIGHT = {"kr": 0.0, "cn": 0.25}
VAL_SEED = {"kr": 9002, "cn": 9013}
HELDOUT_SEED = {"kr": 9001, "cn": 9014}
# Faces the renderer must find (bash tools/setup.sh installs them, FONT_PACKAGE names their Debian
# packages): the shipped readers' last runs were rendered with all of these (model card, cn run 9); with
# fewer, a run makes other data.
RECIPE_FONTS = {"kr": ("NanumGothicBold.ttf", "NotoSansCJK-Bold.ttc", "wqy-zenhei.ttc"),
                "cn": ("wqy-microhei.ttc", "wqy-zenhei.ttc", "NotoSansCJK-Bold.ttc")}
FONT_PACKAGE = {"NanumGothicBold.ttf": "fonts-nanum", "NotoSansCJK-Bold.ttc": "fonts-noto-cjk",
                "wqy-microhei.ttc": "fonts-wqy-microhei", "wqy-zenhei.ttc": "fonts-wqy-zenhei"}
PERCENTILE = {"kr": "99.99", "cn": "99.9"}  # int8 activation ranges, the model card's choices
REAL = {"kr": "kr_plates_dev", "cn": "cn_plates_dev"}

FLAGS = flags.FLAGS


def check_fonts(charset: str, allow_fewer: bool) -> List[str]:
    """The plate faces the renderer finds; an error when one of ``RECIPE_FONTS`` is missing (unless allowed)."""
    from tools.synth.fonts import find_fonts

    faces = [f"{Path(f.path).name}#{f.index}" for f in find_fonts(charset)]
    missing = [n for n in RECIPE_FONTS[charset] if not any(face.startswith(n + "#") for face in faces)]
    if missing and not allow_fewer:
        raise AlprError(f"the {charset} recipe renders with {', '.join(RECIPE_FONTS[charset])}, but "
                        f"{', '.join(missing)} is not installed: run bash tools/setup.sh (or apt-get install -y "
                        f"{' '.join(FONT_PACKAGE[n] for n in missing)}), or pass --allow_fewer_fonts")
    return faces


def _render(charset: str, out: Path, count: int, seed: int, extra: Sequence[str], log: Path) -> Path:
    if not (out / "labels.txt").is_file():
        run_step([sys.executable, "-m", "tools.synth.plates", "--charset", charset, "--count", str(count),
                  "--out", str(out), "--seed", str(seed), "--workers", "0", *extra], log)
    return out / "labels.txt"


def _render_mix(charset: str, data: Path, scale: float, first_seed: int, log: Path, night: float = 0.0) -> Path:
    """The charset's training mix (``RECIPES``), rendered with seeds ``first_seed``+ into ``data``; ``night`` > 0
    renders that share of every part under a night light (``tools.synth.plates --night``)."""
    lit = ("--night", f"{night:g}") if night > 0 else ()
    parts = [str(_render(charset, data / name, scaled(count, scale), first_seed + i, (*extra, *lit), log))
             for i, (name, count, extra) in enumerate(RECIPES[charset])]
    labels = data / "train" / "labels.txt"
    if not labels.is_file():
        run_step([sys.executable, "-m", "tools.synth.mix", "--out", str(labels), "--seed", "1", *parts], log)
    return labels


def _train(data: Path, val: Path, charset: str, run_dir: Path, epochs: int, learning_rate: float,
           batch_size: int, precision: str, log: Path, init: Optional[Path] = None) -> Path:
    """train_lprnet.py into ``run_dir`` unless it has run ``epochs``; its best weights."""
    state = run_dir / "state.json"
    done = json.loads(state.read_text(encoding="utf-8"))["epoch"] if state.is_file() else 0
    if done < epochs:
        run_step([sys.executable, str(REPO / "train_lprnet.py"), "--data", str(data), "--val_data", str(val),
                  "--charset", charset, "--out", str(run_dir), "--epochs", str(epochs), "--warmup_epochs", "0.3",
                  "--dropout", "0.1", "--learning_rate", str(learning_rate), "--batch_size", str(batch_size),
                  "--freeze_bn", "no", "--precision", precision,
                  *(["--init_weights", str(init)] if init else [])], log, show=True)
    return run_dir / "best.weights.h5"


def train_reader(charset: str, out: Path, epochs: Optional[int], scale: float, heldout: Optional[str],
                 learning_rate: float, batch_size: int, allow_fewer_fonts: bool = False,
                 precision: Optional[str] = None, refresh_epochs: Optional[int] = None,
                 init_weights: Optional[str] = None, refresh_night: Optional[float] = None) -> None:
    """Run the recipe; ``epochs`` / ``precision`` / ``refresh_epochs`` None take the charset's schedule
    (``SCHEDULES``, ``REFRESH_EPOCHS``). ``init_weights``: Keras reader weights of 68 classes to start from
    (another charset's reader too: its class channels are relearned); None takes the charset's
    (``INIT_WEIGHTS``), "none" is random initialisation. ``refresh_night`` > 0 renders that share of the refresh
    stage's crops under a night light; the int8 calibration stays on the day crops. None takes the share the
    folder's refresh stage was started with, and for a new stage the charset's (``REFRESH_NIGHT``)."""
    if charset not in RECIPES:
        raise AlprError(f"unknown charset {charset!r}; expected one of {', '.join(RECIPES)}")
    epochs, scheduled = schedule(charset, epochs, precision)
    refresh_epochs = refresh_schedule(charset, refresh_epochs)
    night = night_schedule(charset, refresh_night, refresh_epochs)
    init = init_schedule(charset, init_weights)
    if not 0 < scale <= 1:
        raise AlprError("--scale must be in (0, 1]")
    if refresh_epochs < 0:
        raise AlprError("--refresh_epochs must be 0 or more")
    if not 0.0 <= night <= 1.0:
        raise AlprError(f"--refresh_night must be between 0 and 1, got {night:g}")
    if night > 0 and not refresh_epochs:
        raise AlprError("--refresh_night needs a refresh stage (--refresh_epochs 1 or more)")
    if epochs < 1 or batch_size < 1:
        raise AlprError("--epochs and --batch_size must be 1 or more")
    if not learning_rate > 0:
        raise AlprError("--learning_rate must be more than 0")
    if init is not None and not init.is_file():
        if init_weights is None:  # the charset's default, not a path the user gave
            raise AlprError(f"the {charset} recipe starts from {init} (INIT_WEIGHTS), which is missing: pass "
                            "--init_weights FILE, or --init_weights none for random initialisation")
        raise AlprError(f"--init_weights {init}: no such file")
    init = init.resolve() if init is not None else None
    out = out.resolve()
    precision = scheduled if precision is not None else run_precision(out, scheduled)
    out.mkdir(parents=True, exist_ok=True)
    fonts = check_fonts(charset, allow_fewer_fonts)
    # The schedule too: resuming under another batch, rate or epoch count would change it mid-run.
    want = {"charset": charset, "scale": scale, "fonts": fonts, "epochs": epochs,
            "batch_size": batch_size, "learning_rate": learning_rate}
    if precision != "float32":  # float32 is not recorded, so folders of the float32 runs before still resume
        want["precision"] = precision
    if init is not None:  # by content, not path: the same path may hold other weights later, a moved
        want["init_weights"] = {"sha256": sha256_file(init)}  # checkout the same ones
    check_recipe(out, want)
    # the refresh stage keeps its own record, so a folder trained before the stage existed goes on to it
    refresh = out / "refresh"
    rate = round(learning_rate * REFRESH_LR_SHARE, 12)
    if refresh_epochs:
        refresh.mkdir(exist_ok=True)
        stage = {"epochs": refresh_epochs, "learning_rate": rate, "seed": REFRESH_SEEDS[charset]}
        default_night = night
        if refresh_night is None:  # no share given: the one the stage began with
            night = resumed_night(refresh, night)
        if night > 0:  # recorded only when set, so the folders of earlier runs still resume
            stage["night"] = night
        check_recipe(refresh, stage)
        if night != default_night:
            print(f"{refresh} was started with --refresh_night {night:g}, not this recipe's "
                  f"{default_night:g}: going on with {night:g} (another share: another --out)", flush=True)
    elif (refresh / "recipe.json").is_file():  # its models would be scored as the recipe's
        raise AlprError(f"{out} holds a refresh stage ({refresh / 'recipe.json'}): pass its --refresh_epochs, "
                        "or use another --out")
    log = out / "steps.log"
    py = sys.executable
    data = out / "data"
    train_labels = _render_mix(charset, data, scale, SEEDS[charset], log)
    val = _render(charset, data / "val", scaled(1000, scale), VAL_SEED[charset], (), log)
    held = Path(heldout).resolve() if heldout else _render(
        charset, data / "heldout", scaled(2000, scale), HELDOUT_SEED[charset], (), log)
    weights = _train(train_labels, val, charset, out / "lprnet", epochs, learning_rate, batch_size, precision, log,
                     init=init)
    if refresh_epochs:
        fresh = _render_mix(charset, refresh / "data", scale, REFRESH_SEEDS[charset], log, night)
        weights = _train(fresh, val, charset, refresh / "lprnet", refresh_epochs, rate, batch_size, precision, log,
                         init=weights)
    quantization = {
        "int8": ["int8", "--percentile", PERCENTILE[charset], "--calibration", str(train_labels)],
        "f16": ["float16"],
    }
    models = {q: out / f"lprnet-{charset}-{q}.tflite" for q in quantization}
    for q, model in models.items():
        if not newer(model, weights):
            run_step([py, "-m", "lprnet.export", "--weights", str(weights), "--out", str(model), "--charset", charset,
                      "--quantization", *quantization[q]], log)
    real = SHARED / "data" / REAL[charset]
    sets = [("heldout", held)] + ([("real", real)] if real.is_dir() else [])
    for q, model in models.items():
        for name, images in sets:
            run_step([py, "-m", "lprnet.evaluate", "--weights", str(model), "--charset", charset, "--images",
                      str(images), "--json", str(out / f"eval-{q}-{name}.json")], log)
    for q in models:
        for name, _ in sets:
            scores = json.loads((out / f"eval-{q}-{name}.json").read_text(encoding="utf-8"))
            spec = scores.get("by_char_px", {}).get("within_spec")
            within = (f" ({spec['sequence_accuracy']:.4f} of the {spec['count']} whose smallest character is at "
                      f"least {MIN_CHAR_PX:g} px)") if spec else ""
            print(f"{q} {name}: sequence accuracy {scores['sequence_accuracy']:.4f} of {scores['count']} plates"
                  f"{within}")
    print(f"done: models (from {weights.relative_to(out)}) in {out}, scores in {out}/eval-*.json")


def run_precision(out: Path, scheduled: str) -> str:
    """The precision of a run without --precision: the one ``out`` was started with (recipe.json; float32 is
    not recorded), so that the same command resumes on any machine; for a new folder ``scheduled``, or float32
    where that is bfloat16 and this machine would emulate it (said on stdout)."""
    have = recorded(out)
    if have is not None:
        return have.get("precision", "float32")
    from core.keras.layers import fallback_note, host_precision  # TensorFlow: only once a run starts

    precision = host_precision(scheduled)
    if precision != scheduled:
        print(fallback_note("the recipe trains", scheduled), flush=True)
    return precision


def schedule(charset: str, epochs: Optional[int], precision: Optional[str]) -> Schedule:
    """``epochs`` and ``precision``, each None replaced by the charset's measured schedule (``SCHEDULES``)."""
    default = SCHEDULES[charset]
    return Schedule(default.epochs if epochs is None else epochs,
                    default.precision if precision is None else precision)


def init_schedule(charset: str, init_weights: Optional[str]) -> Optional[Path]:
    """``init_weights`` as a path; None replaced by the charset's (``INIT_WEIGHTS``), "none" (any case): None,
    random initialisation."""
    if init_weights is None:
        default = INIT_WEIGHTS[charset]
        return REPO / default if default else None
    if not init_weights.strip():
        raise AlprError("--init_weights is empty: pass a weights file, or none for random initialisation")
    return None if init_weights.lower() == "none" else Path(init_weights)


def night_schedule(charset: str, refresh_night: Optional[float], refresh_epochs: int) -> float:
    """``refresh_night``, None replaced by the charset's (``REFRESH_NIGHT``), or 0 without a refresh stage."""
    if refresh_night is not None:
        return refresh_night
    return REFRESH_NIGHT[charset] if refresh_epochs else 0.0


def resumed_night(refresh: Path, default: float) -> float:
    """The night share of a refresh stage already started in ``refresh`` (its recipe.json; none recorded: 0),
    so that a run without --refresh_night goes on as it began, like --precision; ``default`` for a new stage."""
    have = recorded(refresh)
    if have is None:
        return default
    night = have.get("night", 0.0)
    if isinstance(night, bool) or not isinstance(night, (int, float)) or not 0.0 <= night <= 1.0:
        raise AlprError(f"{refresh / 'recipe.json'} records night {night!r}, not a share between 0 and 1: "
                        "use another --out")
    return float(night)


def refresh_schedule(charset: str, refresh_epochs: Optional[int]) -> int:
    """``refresh_epochs``, None replaced by the charset's (``REFRESH_EPOCHS``)."""
    return REFRESH_EPOCHS[charset] if refresh_epochs is None else refresh_epochs


def main(argv: Sequence[str]) -> None:
    del argv
    run_recipe(lambda: train_reader(FLAGS.charset, Path(FLAGS.out), FLAGS.epochs, FLAGS.scale, FLAGS.heldout,
                                    FLAGS.learning_rate, FLAGS.batch_size, FLAGS.allow_fewer_fonts, FLAGS.precision,
                                    FLAGS.refresh_epochs, FLAGS.init_weights, FLAGS.refresh_night))


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Define the recipe's flags on ``fv`` (a test passes a fresh FlagValues)."""
    on = {"flag_values": fv}

    def per_charset(field: str) -> str:  # the help text's defaults, from SCHEDULES
        return ", ".join(f"{c} {getattr(s, field)}" for c, s in SCHEDULES.items())

    flags.DEFINE_enum("charset", "kr", sorted(RECIPES), "plate alphabet", **on)
    flags.DEFINE_string("out", None, "output folder (data, run, models, scores)", **on)
    # --epochs and --precision default per charset (SCHEDULES). Without bfloat16 hardware a new run trains in
    # float32 (run_precision); the epochs stay. For kr session 12 measured float32 for 13 epochs (105 min,
    # held-out 0.922); for cn from the Korean weights no float32 schedule has been measured.
    flags.DEFINE_integer("epochs", None, f"training epochs (default: {per_charset('epochs')})", **on)
    flags.DEFINE_integer("refresh_epochs", None, "epochs of the refresh stage, the trained model continued on "
                         f"fresh crops at {REFRESH_LR_SHARE:g} of the peak rate; 0: none (default: "
                         + ", ".join(f"{c} {n}" for c, n in REFRESH_EPOCHS.items()) + ")", **on)
    flags.DEFINE_float("refresh_night", None, "share of the refresh stage's crops rendered under a night light "
                       "(tools.synth.plates --night); 0: day crops only (default: as --out's refresh stage was "
                       "started; for a new one " + ", ".join(f"{c} {n:g}" for c, n in REFRESH_NIGHT.items())
                       + ")", **on)
    flags.DEFINE_float("scale", 1.0, "fraction of every set to render (a smoke run: 0.002)", **on)
    flags.DEFINE_string("heldout", None, "held-out label file or folder (default: render one)", **on)
    flags.DEFINE_float("learning_rate", 1e-3, "peak learning rate", **on)
    # 32, not 64: twice the updates for the same crops. On 10,000 cn crops, 4 epochs at lr 1e-3, the
    # validation CTC loss after the 4th epoch was 6.7 at batch 32 against 9.2 at 64; lr 3e-3 at 64 and
    # lr 1e-3 at 16 stayed on the first plateau (model card, session 12).
    flags.DEFINE_integer("batch_size", 32, "batch size", **on)
    flags.DEFINE_boolean("allow_fewer_fonts", False, "render even when faces of RECIPE_FONTS are missing "
                         "(the data, and so the model, then differ from the recipe's)", **on)
    flags.DEFINE_enum("precision", None, list(PRECISIONS),
                      f"train_lprnet.py --precision (default: as --out was started; for a new folder "
                      f"{per_charset('precision')}, or float32 on a machine without bfloat16 hardware); "
                      "mixed_bfloat16 takes about 0.6 of float32's time a step on a CPU with AVX512_BF16 or AMX, "
                      "about 5 times it without", **on)
    flags.DEFINE_string("init_weights", None, "Keras reader weights to start from (another charset's too: its "
                        "class channels are relearned); none: random initialisation (default: "
                        + ", ".join(f"{c} {w or 'none'}" for c, w in INIT_WEIGHTS.items()) + ")", **on)
    flags.mark_flag_as_required("out", **on)


if __name__ == "__main__":
    define_flags()
    app.run(main)
