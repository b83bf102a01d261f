"""Training of the reader: labels, augmentation, a short run with bad files, resume, and learning."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.errors import AlprError
from lprnet.charset import load_charset
from lprnet.train import encode_labels
from tests.fixtures.lprnet_synth import write_digit_plates
from tests.paths import REPO


def test_encode_labels_pads_with_blank() -> None:
    labels, lengths = encode_labels(["12가3456", "서울1가2"], load_charset("kr"))
    assert labels.tolist() == [[1, 2, 10, 3, 4, 5, 6], [50, 1, 10, 2, 67, 67, 67]]
    assert lengths.tolist() == [7, 4]
    with pytest.raises(AlprError, match="too long for 18 CTC steps"):
        encode_labels(["1234567890"], load_charset("kr"))


def test_projective_matches_opencv() -> None:
    tf = pytest.importorskip("tensorflow")
    from lprnet.train import _projective

    dst = np.array([[0, 0], [94, 0], [94, 24], [0, 24]], np.float32)
    src = np.array([[3, -2], [90, 1], [96, 27], [-4, 22]], np.float32)
    coeffs = _projective(tf.constant(dst), tf.constant(src)).numpy()
    ref = cv2.getPerspectiveTransform(dst, src)  # maps dst -> src, normalised so ref[2,2] = 1
    assert np.allclose(coeffs, ref.ravel()[:8], atol=1e-4)


def test_augmentation_is_seeded_and_in_range() -> None:
    tf = pytest.importorskip("tensorflow")
    from lprnet.train import _augment

    img = np.full((24, 94, 3), 128, np.uint8)
    img[6:18, 20:70] = 20
    a = _augment(tf.constant(img), tf.constant([1, 2], tf.int64)).numpy()
    b = _augment(tf.constant(img), tf.constant([1, 2], tf.int64)).numpy()
    c = _augment(tf.constant(img), tf.constant([5, 9], tf.int64)).numpy()
    assert a.shape == (24, 94, 3) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 255.0
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert np.abs(a - img).mean() > 1.0  # it does change the crop


def test_one_iterator_over_repeated_data_gives_each_epochs_batches() -> None:
    """Training reads one iterator over the repeated dataset, ceil(n / batch) batches an epoch (session 47: deleting
    an iterator at each epoch's end stalled the cores). It must give exactly the batches that a new iterator per
    epoch gave, shuffled anew each epoch and augmented, the short last batch included."""
    import math

    from lprnet.train import make_dataset

    rng = np.random.default_rng(47)
    n, batch = 10, 4
    images = rng.integers(0, 256, (n, 24, 94, 3), dtype=np.uint8)
    labels = np.tile(np.arange(n, dtype=np.int32)[:, None], (1, 8))  # row i tells which crop a batch row is
    lengths = np.full(n, 8, np.int32)
    per_epoch_ds = make_dataset(images, labels, lengths, batch, True, True, seed=3)
    per_epoch = [list(per_epoch_ds) for _ in range(3)]
    it = iter(make_dataset(images, labels, lengths, batch, True, True, seed=3).repeat())
    steps = math.ceil(n / batch)
    one = [[next(it) for _ in range(steps)] for _ in range(3)]
    assert [len(e) for e in per_epoch] == [steps] * 3 and len(one[0][-1][0]) == n % batch
    orders = [np.concatenate([b[1][:, 0].numpy() for b in e]) for e in one]
    assert all(sorted(o) == list(range(n)) for o in orders)  # each epoch holds every crop once
    assert not np.array_equal(orders[0], orders[1])  # and is shuffled anew
    for a_epoch, b_epoch in zip(per_epoch, one):
        for a, b in zip(a_epoch, b_epoch):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_cli_empty_folder_is_a_one_line_error(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "train_lprnet.py", "--data", str(tmp_path), "--out", str(tmp_path / "run")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == f"error: no usable plate crops in {tmp_path}"
    assert not (tmp_path / "run").exists()


def test_unknown_precision_is_refused_before_the_crops_are_read(tmp_path: Path) -> None:
    from lprnet.train import TrainConfig, train

    cfg = TrainConfig(data=str(tmp_path / "missing"), out_dir=str(tmp_path / "run"), precision="float16")
    with pytest.raises(AlprError, match=r"precision must be one of float32, mixed_bfloat16, not 'float16'"):
        train(cfg, log=lambda _: None)
    assert not (tmp_path / "run").exists()


def test_bad_files_are_counted_before_training(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from lprnet.train import TrainConfig, train

    data = tmp_path / "data"
    write_digit_plates(data, 6, seed=1)
    (data / "5555.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    cv2.imwrite(str(data / "12ñ4.png"), np.zeros((24, 94, 3), np.uint8))
    logs: list = []
    cfg = TrainConfig(data=str(data), out_dir=str(tmp_path / "run"), charset="kr", epochs=0, progress=False)
    assert train(cfg, log=logs.append).epoch == []
    assert any("2 skipped (1 bad image, 1 bad label" in line for line in logs), logs
    assert any("training on 5 crops, validating on 1, 2 bad files skipped" in line for line in logs), logs


@pytest.mark.slow
def test_short_run_skips_bad_files_and_resumes(tmp_path: Path) -> None:
    from lprnet.train import TrainConfig, train

    data = tmp_path / "data"
    write_digit_plates(data, 32, seed=1)
    (data / "1234-9.png").write_bytes(b"\x89PNG broken")  # corrupt crop
    cv2.imwrite(str(data / "12AB.png"), np.zeros((24, 94, 3), np.uint8))  # not in the kr charset
    write_digit_plates(tmp_path / "val", 8, seed=2)
    logs: list = []
    cfg = TrainConfig(data=str(data), val_data=str(tmp_path / "val"), out_dir=str(tmp_path / "run"),
                      charset="kr", epochs=2, batch_size=16, learning_rate=3e-3, stn=True, progress=False)
    history = train(cfg, log=logs.append)
    assert any("2 bad files skipped" in line for line in logs), logs
    assert history.epoch == [1, 2] and history.loss[1] < history.loss[0]
    run = tmp_path / "run"
    for name in ("last.weights.h5", "best.weights.h5", "optimizer.npz", "state.json", "curves.png"):
        assert (run / name).is_file(), name
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert list((run / "logs").glob("events.out.tfevents.*"))
    from lprnet.model import load_keras_model

    trained = load_keras_model(str(run / "last.weights.h5"))
    theta_kernel = trained.get_layer("stn_theta").get_weights()[0]
    assert np.abs(theta_kernel).max() > 0  # the STN gets gradients through the bilinear sampler
    cfg.epochs = 3
    history = train(cfg, log=logs.append)
    assert any("resumed" in line and "epoch 2" in line for line in logs)
    assert history.epoch == [1, 2, 3]
    assert json.loads((run / "state.json").read_text())["epoch"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_training_from_scratch_learns_to_read(tmp_path: Path, precision: str) -> None:
    """256 rendered 4-digit crops: the CTC loss falls and validation accuracy rises from 0, in float32 and in
    bfloat16 (train_lprnet.py --precision)."""
    import keras

    from lprnet.train import TrainConfig, train

    write_digit_plates(tmp_path / "data", 256, seed=1)
    write_digit_plates(tmp_path / "val", 48, seed=2)
    cfg = TrainConfig(data=str(tmp_path / "data"), val_data=str(tmp_path / "val"),
                      out_dir=str(tmp_path / "run"), charset="kr", epochs=12, batch_size=32,
                      learning_rate=3e-3, warmup_epochs=0.5, dropout=0.1, augment=False, progress=False,
                      precision=precision)
    history = train(cfg, log=lambda _: None)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert history.val_sequence_accuracy[0] == 0.0
    assert history.loss[-1] < history.loss[0] / 10
    assert max(history.val_sequence_accuracy) >= 0.6
    assert history.val_char_accuracy[-1] > 0.8


@pytest.mark.slow
def test_fine_tuning_from_weights_freezes_batchnorm(tmp_path: Path) -> None:
    from lprnet.model import build_lprnet, load_keras_model
    from lprnet.train import TrainConfig, train

    start = build_lprnet(68)
    start.save_weights(str(tmp_path / "start.weights.h5"))
    write_digit_plates(tmp_path / "data", 24, seed=3)
    cfg = TrainConfig(data=str(tmp_path / "data"), out_dir=str(tmp_path / "run"), charset="kr", epochs=1,
                      batch_size=12, init_weights=str(tmp_path / "start.weights.h5"), progress=False)
    train(cfg, log=lambda _: None)
    tuned = load_keras_model(str(tmp_path / "run" / "last.weights.h5"))
    for name in ("backbone_1", "backbone_21"):
        for before, after in zip(start.get_layer(name).get_weights(), tuned.get_layer(name).get_weights()):
            assert np.array_equal(before, after), name
    before = start.get_layer("backbone_0").get_weights()[0]
    assert not np.array_equal(before, tuned.get_layer("backbone_0").get_weights()[0])  # convs do train


@pytest.mark.parametrize("charset", ["kr", pytest.param("cn", marks=pytest.mark.slow)])
def test_one_command_recipe_smoke(tmp_path: Path, charset: str) -> None:
    """tools.train_reader at a tiny scale: renders, trains one epoch, exports, scores; a rerun skips the done steps.
    kr runs first without the refresh stage (a folder from before the stage existed), then with its default."""
    from tools.train_reader import RECIPES, REFRESH_SEEDS

    out = tmp_path / "reader"
    cmd = [sys.executable, "-m", "tools.train_reader", "--charset", charset, "--out", str(out),
           "--scale", "0.002", "--epochs", "1"]
    first_cmd = [*cmd, "--refresh_epochs", "0"]  # both charsets' default is 3 (kr session 25, cn session 29)
    proc = subprocess.run(first_cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "models (from lprnet/best.weights.h5)" in proc.stdout and not (out / "refresh").exists()
    first_out = proc.stdout
    expected = sum(max(2, round(count * 0.002)) for _, count, _ in RECIPES[charset])
    assert len((out / "data" / "train" / "labels.txt").read_text(encoding="utf-8").splitlines()) == expected
    assert json.loads((out / "lprnet" / "state.json").read_text())["epoch"] == 1
    for q in ("int8", "f16"):
        assert (out / f"lprnet-{charset}-{q}.tflite").read_bytes()[4:8] == b"TFL3"
        scores = json.loads((out / f"eval-{q}-heldout.json").read_text(encoding="utf-8"))
        assert scores["count"] == 4 and 0.0 <= scores["sequence_accuracy"] <= 1.0
        assert f"{q} heldout: sequence accuracy" in proc.stdout
        # the renderer's character heights reach the scores: crops at or above the 15 px camera spec
        heights = [float(line.split("\t")[5]) for line in
                   (out / "data" / "heldout" / "labels.txt").read_text(encoding="utf-8").splitlines()]
        within = scores.get("by_char_px", {}).get("within_spec", {}).get("count", 0)
        assert len(heights) == 4 and within == sum(h >= 15 for h in heights)
    if charset == "kr":  # the default adds the refresh stage: 3 epochs on a fresh render at 0.3 of the rate
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        steps = [line for line in proc.stdout.splitlines() if line.startswith("$ ")]
        renders = [line for line in steps if "tools.synth.plates" in line]
        assert [int(line.split("--seed ")[1].split()[0]) for line in renders] == [
            REFRESH_SEEDS["kr"] + i for i in range(len(RECIPES["kr"]))]
        trains = [line.split() for line in steps if "train_lprnet.py" in line]
        assert len(trains) == 1
        flag = {k: v for k, v in zip(trains[0], trains[0][1:]) if k.startswith("--")}
        assert flag["--init_weights"] == str(out / "lprnet" / "best.weights.h5")
        assert flag["--out"] == str(out / "refresh" / "lprnet")
        assert (flag["--epochs"], flag["--learning_rate"]) == ("3", "0.0003")
        assert json.loads((out / "refresh" / "lprnet" / "state.json").read_text())["epoch"] == 3
        fresh = (out / "refresh" / "data" / "train" / "labels.txt").read_text(encoding="utf-8").splitlines()
        assert len(fresh) == expected
        exports = [line for line in steps if "lprnet.export" in line]
        assert len(exports) == 2 and all(str(out / "refresh" / "lprnet" / "best.weights.h5") in e for e in exports)
        assert "models (from refresh/lprnet/best.weights.h5)" in proc.stdout
        before = (out / "steps.log").read_text(encoding="utf-8")
        proc = subprocess.run([*cmd, "--refresh_epochs", "2"], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and "'epochs': 3" in proc.stderr.strip().splitlines()[-1]
        # turned off after it ran: refused too (the folder's models are the stage's)
        proc = subprocess.run(first_cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and "holds a refresh stage" in proc.stderr.strip().splitlines()[-1]
        assert (out / "steps.log").read_text(encoding="utf-8") == before  # refused before any step
    else:  # cn: the rest without the stage (kr's branch above covers it)
        cmd = first_cmd
    first = (out / "steps.log").read_text(encoding="utf-8").count("\n$ ")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rerun = [line for line in proc.stdout.splitlines() if line.startswith("$ ")]
    assert rerun and all("lprnet.evaluate" in line for line in rerun), rerun  # rendering, training, export skipped
    assert (out / "steps.log").read_text(encoding="utf-8").count("\n$ ") == first + len(rerun)
    other = "cn" if charset == "kr" else "kr"
    proc = subprocess.run([*cmd[:4], other, *cmd[5:]], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "holds a run with" in proc.stderr.strip().splitlines()[-1]
    proc = subprocess.run([*cmd, "--batch_size", "16"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "'batch_size': 16" in proc.stderr.strip().splitlines()[-1]
    # the defaults of the model card: bfloat16 (kr session 19, cn session 29) where the machine has bfloat16
    # hardware, float32 (not recorded) where it would be emulated; cn starts from the shipped Korean reader
    # (session 29), kr from random initialisation
    from core.keras.layers import bfloat16_hardware

    recipe = json.loads((out / "recipe.json").read_text())
    if bfloat16_hardware():
        assert recipe["precision"] == "mixed_bfloat16"
        other, have_it = "float32", True
    else:
        assert "precision" not in recipe
        assert "bfloat16 would be emulated here" in first_out and "trains in float32" in first_out
        other, have_it = "mixed_bfloat16", False
    proc = subprocess.run([*cmd, "--precision", other], cwd=REPO, capture_output=True, text=True, timeout=120)
    have, want = proc.stderr.strip().splitlines()[-1].split(", not {")  # "... holds a run with {have}, not {want}"
    assert proc.returncode != 0 and ("'precision': 'mixed_bfloat16'" in have) == have_it
    assert ("'precision': 'mixed_bfloat16'" in want) != have_it
    if charset == "kr":
        assert "init_weights" not in recipe
    else:
        kr = (REPO / "checkpoints" / "lprnet-kr.weights.h5").read_bytes()
        assert recipe["init_weights"] == {"sha256": hashlib.sha256(kr).hexdigest()}
        proc = subprocess.run([*cmd, "--init_weights", "none"], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        have, want = proc.stderr.strip().splitlines()[-1].split(", not {")
        assert proc.returncode != 0 and "init_weights" in have and "init_weights" not in want


def test_one_command_recipe_starts_from_init_weights(tmp_path: Path) -> None:
    """--init_weights reaches train_lprnet.py as a resolved path, the recipe records the file by its sha256
    (hashlib here), and a folder started from other weights is refused before any step; a missing file is a
    one-line error before anything is made."""
    import shutil

    out = tmp_path / "reader"
    proc = subprocess.run([sys.executable, "-m", "tools.train_reader", "--out", str(out), "--init_weights",
                           str(tmp_path / "none.weights.h5")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == f"error: --init_weights {tmp_path / 'none.weights.h5'}: no such file"
    assert not out.exists()
    proc = subprocess.run([sys.executable, "-m", "tools.train_reader", "--out", str(out), "--init_weights="],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1] == (
        "error: --init_weights is empty: pass a weights file, or none for random initialisation")
    assert not out.exists()

    start = tmp_path / "start.weights.h5"  # another charset's reader: 68 classes too
    shutil.copyfile(REPO / "checkpoints" / "lprnet-cn.weights.h5", start)
    cmd = [sys.executable, "-m", "tools.train_reader", "--charset", "kr", "--out", str(out), "--scale", "0.002",
           "--epochs", "1", "--refresh_epochs", "1", "--init_weights", str(start)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trains = [line.split() for line in proc.stdout.splitlines() if line.startswith("$ ") and "train_lprnet.py" in line]
    assert len(trains) == 2
    flags = [{k: v for k, v in zip(t, t[1:]) if k.startswith("--")} for t in trains]
    assert flags[0]["--init_weights"] == str(start.resolve()) and flags[0]["--freeze_bn"] == "no"
    # the refresh stage continues the trained model, not the start
    assert flags[1]["--init_weights"] == str(out / "lprnet" / "best.weights.h5")
    recipe = json.loads((out / "recipe.json").read_text(encoding="utf-8"))
    assert recipe["init_weights"] == {"sha256": hashlib.sha256(start.read_bytes()).hexdigest()}
    before = (out / "steps.log").read_text(encoding="utf-8")
    shutil.copyfile(REPO / "checkpoints" / "lprnet-kr.weights.h5", start)  # same path, other weights
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "holds a run with" in proc.stderr.strip().splitlines()[-1]
    assert (out / "steps.log").read_text(encoding="utf-8") == before


def test_one_command_schedule_per_charset() -> None:
    """Without --epochs / --precision each charset gets the schedule its recipe was measured with (model
    card: kr 16 epochs in bfloat16, session 19; cn 18 in bfloat16 from the Korean weights, session 29); given
    flags win. Parsed through the command's own flags, so a flag default that overrides the schedule fails
    here."""
    from absl import flags

    from tools.train_reader import RECIPES, SCHEDULES, define_flags, schedule

    assert set(SCHEDULES) == set(RECIPES)

    def parsed(*args: str) -> tuple:
        fv = flags.FlagValues()
        define_flags(fv)
        fv(["train_reader", "--out", "x", *args])
        return tuple(schedule(fv.charset, fv.epochs, fv.precision))

    assert parsed("--charset", "kr") == (16, "mixed_bfloat16")
    assert parsed() == (16, "mixed_bfloat16")  # kr is the default charset
    assert parsed("--charset", "cn") == (18, "mixed_bfloat16")
    assert parsed("--charset", "cn", "--epochs", "5", "--precision", "float32") == (5, "float32")
    assert parsed("--charset", "kr", "--precision", "float32") == (16, "float32")
    assert parsed("--charset", "cn", "--epochs", "2") == (2, "mixed_bfloat16")
    # the start: cn the shipped Korean reader (session 29), kr random initialisation; "none" turns it off
    from tools.train_reader import init_schedule

    def init(*args: str):
        fv = flags.FlagValues()
        define_flags(fv)
        fv(["train_reader", "--out", "x", *args])
        return init_schedule(fv.charset, fv.init_weights)

    assert init() is None and init("--charset", "kr") is None
    assert init("--charset", "cn") == REPO / "checkpoints" / "lprnet-kr.weights.h5"
    assert init("--charset", "cn", "--init_weights", "none") is None
    assert init("--charset", "cn", "--init_weights", "None") is None
    assert init("--charset", "kr", "--init_weights", "w.h5") == Path("w.h5")
    # the refresh stage: 3 epochs (kr session 25, run 15; cn session 29, run 16); a given flag wins
    from tools.train_reader import refresh_schedule

    def refresh(*args: str) -> int:
        fv = flags.FlagValues()
        define_flags(fv)
        fv(["train_reader", "--out", "x", *args])
        return refresh_schedule(fv.charset, fv.refresh_epochs)

    assert (refresh(), refresh("--charset", "kr"), refresh("--charset", "cn")) == (3, 3, 3)
    assert (refresh("--charset", "cn", "--refresh_epochs", "2"), refresh("--refresh_epochs", "0")) == (2, 0)


def test_one_command_recipe_rejects_bad_scale(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tools.train_reader", "--out", str(tmp_path / "r"), "--scale", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == "error: --scale must be in (0, 1]"
    proc = subprocess.run([sys.executable, "-m", "tools.train_reader", "--out", str(tmp_path / "r"),
                           "--refresh_epochs", "-1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == "error: --refresh_epochs must be 0 or more"
    # refused before anything is rendered (a 0-epoch run would render 40,000 crops, then fail in training)
    for args, message in ((("--epochs", "0"), "--epochs and --batch_size must be 1 or more"),
                          (("--batch_size", "0"), "--epochs and --batch_size must be 1 or more"),
                          (("--learning_rate", "0"), "--learning_rate must be more than 0")):
        proc = subprocess.run([sys.executable, "-m", "tools.train_reader", "--out", str(tmp_path / "r"), *args],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1] == f"error: {message}"
    assert not (tmp_path / "r").exists()


def test_one_command_recipe_needs_its_fonts(monkeypatch: pytest.MonkeyPatch) -> None:
    """With one Chinese face (what the renderer finds with fonts-wqy-microhei alone) the cn recipe stops and
    says what to install: its data would not be the recipe's."""
    from core.errors import AlprError
    from tools import train_reader
    from tools.synth import fonts

    monkeypatch.setattr(fonts, "find_fonts", lambda charset: (fonts.FontSpec("/x/wqy-microhei.ttc", 0),))
    with pytest.raises(AlprError, match=r"wqy-zenhei.ttc, NotoSansCJK-Bold.ttc is not installed.*fonts-noto-cjk"):
        train_reader.check_fonts("cn", allow_fewer=False)
    assert train_reader.check_fonts("cn", allow_fewer=True) == ["wqy-microhei.ttc#0"]
    every = tuple(fonts.FontSpec(f"/y/{name}", 2) for name in train_reader.RECIPE_FONTS["cn"])
    monkeypatch.setattr(fonts, "find_fonts", lambda charset: every)
    assert len(train_reader.check_fonts("cn", allow_fewer=False)) == 3


def test_one_command_recipe_missing_default_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A charset whose default start (INIT_WEIGHTS) is missing says so, and how to go on, before anything is made."""
    from core.errors import AlprError
    from tools import train_reader

    monkeypatch.setitem(train_reader.INIT_WEIGHTS, "cn", "checkpoints/no-such.weights.h5")
    with pytest.raises(AlprError) as err:
        train_reader.train_reader("cn", tmp_path / "r", None, 1.0, None, 1e-3, 32)
    missing = REPO / "checkpoints" / "no-such.weights.h5"
    assert str(err.value) == (f"the cn recipe starts from {missing} (INIT_WEIGHTS), which is missing: pass "
                              "--init_weights FILE, or --init_weights none for random initialisation")
    assert not (tmp_path / "r").exists()
