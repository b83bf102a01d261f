"""Which precision the training recipes pick on this machine: bfloat16 only where the hardware runs it
(core.keras.layers.cpu_bfloat16 / gpu_bfloat16 / host_precision)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import pytest

from core.errors import AlprError

pytest.importorskip("tensorflow")

# /proc/cpuinfo excerpts. Flag names as the Linux kernel spells them (arch/x86/include/asm/cpufeatures.h:
# "avx512_bf16", "amx_bf16"); the AMD line is abridged from this project's 2-core machine of 2026-12-06.
AMD_NO_AVX512 = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge sse sse2 ht syscall nx mmxext fxsr_opt \
pdpe1gb rdtscp lm constant_tsc rep_good nopl pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe \
popcnt aes xsave avx f16c rdrand hypervisor lahf_lm
"""
SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512dq avx512_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8
vmx flags\t: vnmi preemption_timer posted_intr invvpid ept_x_only
"""
ZEN4 = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_vnni avx512_bf16 avx512_vbmi2\n"
AMX_ONLY = "flags\t\t: avx2 amx_bf16 amx_tile\n"
# the word in another line (the vmx flags, a model name) does not count, nor a longer flag containing it
DECOYS = "model name\t: avx512_bf16 engineering sample\nvmx flags\t: avx512_bf16\nflags\t\t: avx2 avx512_bf16x\n"


@pytest.mark.parametrize("text,expected", [(AMD_NO_AVX512, False), (SAPPHIRE_RAPIDS, True), (ZEN4, True),
                                           (AMX_ONLY, True), (DECOYS, False), ("", False)])
def test_cpu_bfloat16_reads_the_flags_line(text: str, expected: bool) -> None:
    from core.keras.layers import cpu_bfloat16

    assert cpu_bfloat16(text) is expected


@pytest.mark.parametrize("capabilities,expected", [
    ([(5, 3)], False),          # Jetson Nano (Maxwell): emulated
    ([(7, 5)], False),          # T4 (Turing)
    ([(8, 0)], True),           # A100 (Ampere)
    ([(8, 7)], True),           # Jetson Orin
    ([(9, 0), (9, 0)], True),   # two H100
    ([(8, 0), (7, 0)], False),  # a mirrored strategy runs at its slowest GPU's pace
    ([None], False),            # TensorFlow did not say (ROCm, plugins): emulated, the cheaper mistake
    ([(8, 0), None], False),
    ([], False),
])
def test_gpu_bfloat16_from_ampere_on(capabilities: list, expected: bool) -> None:
    from core.keras.layers import gpu_bfloat16

    assert gpu_bfloat16(capabilities) is expected


def test_host_precision_falls_back_to_float32_only_where_bfloat16_is_emulated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from core.keras import layers

    monkeypatch.setattr(layers, "bfloat16_hardware", lambda: False)
    assert layers.host_precision("mixed_bfloat16") == "float32"
    assert layers.host_precision("float32") == "float32"
    monkeypatch.setattr(layers, "bfloat16_hardware", lambda: True)
    assert layers.host_precision("mixed_bfloat16") == "mixed_bfloat16"
    assert layers.host_precision("float32") == "float32"
    with pytest.raises(AlprError, match="precision must be one of"):
        layers.host_precision("float16")


@pytest.fixture
def fake_reader_recipe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """tools.train_reader with its steps replaced: rendering and exporting do nothing, training records the
    precision it was given, scoring writes a score. Returns (run(out, precision, hardware), trained)."""
    from core.keras import layers
    from tools import train_reader as recipe

    trained: List[str] = []

    def train(data, val, charset, run_dir, epochs, rate, batch, precision, log, init=None) -> Path:
        trained.append(precision)
        return run_dir / "best.weights.h5"

    def run_step(cmd: list, log: Path, show: bool = False) -> None:
        if "--json" in cmd:
            Path(cmd[cmd.index("--json") + 1]).write_text('{"sequence_accuracy": 1.0, "count": 1}')

    monkeypatch.setattr(recipe, "check_fonts", lambda charset, allow: ["face.ttf#0"])
    monkeypatch.setattr(recipe, "_render", lambda charset, out, *a: out / "labels.txt")
    monkeypatch.setattr(recipe, "_render_mix", lambda charset, data, *a: data / "train" / "labels.txt")
    monkeypatch.setattr(recipe, "_train", train)
    monkeypatch.setattr(recipe, "run_step", run_step)
    monkeypatch.setattr(recipe, "newer", lambda a, b: True)

    def run(name: str, precision: Optional[str], hardware: bool) -> None:
        monkeypatch.setattr(layers, "bfloat16_hardware", lambda: hardware)
        recipe.train_reader("kr", tmp_path / name, epochs=1, scale=0.002, heldout=None, learning_rate=1e-3,
                            batch_size=4, precision=precision, refresh_epochs=1)

    return run, trained


def test_reader_recipe_precision_by_machine_and_by_folder(fake_reader_recipe, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """A new run trains in the schedule's bfloat16 where the machine has the hardware and in float32 (said on
    stdout, not recorded) where it would be emulated; a given --precision wins; a folder goes on at the
    precision it was started with on whatever machine the same command runs next, and refuses another one."""
    import json

    run, trained = fake_reader_recipe
    run("a", None, hardware=True)
    assert trained == ["mixed_bfloat16"] * 2  # the training and the refresh stage
    assert json.loads((tmp_path / "a" / "recipe.json").read_text())["precision"] == "mixed_bfloat16"
    assert "emulated" not in capsys.readouterr().out
    run("b", None, hardware=False)
    assert trained[2:] == ["float32"] * 2
    assert "precision" not in json.loads((tmp_path / "b" / "recipe.json").read_text())
    assert "so the recipe trains in float32, not mixed_bfloat16" in capsys.readouterr().out
    run("c", "mixed_bfloat16", hardware=False)  # forced
    assert trained[4:] == ["mixed_bfloat16"] * 2
    # resumed on the other kind of machine with the same command: the folder's precision, no note
    run("a", None, hardware=False)
    run("b", None, hardware=True)
    assert trained[6:] == ["mixed_bfloat16"] * 2 + ["float32"] * 2
    assert "emulated" not in capsys.readouterr().out
    with pytest.raises(AlprError, match="holds a run with"):
        run("b", "mixed_bfloat16", hardware=True)
