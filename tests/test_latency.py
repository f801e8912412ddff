"""Latency: benchmark_model output parsing (verbatim outputs), adb errors, host timing, LUTs."""

import os
import random
import shutil

import numpy as np
import pytest

from helpers import assert_one_line_error, run_tool, tiny_space
from ofa_tf.errors import OfaError
from ofa_tf.export import keras_to_tflite
from ofa_tf.latency import AndroidBenchmark, LatencyTable, benchmark_host
from ofa_tf.latency.android import parse_benchmark_output
from ofa_tf.latency.lut import op_specs
from ofa_tf.latency.lut import distinct_op_specs
from ofa_tf.latency.ops import build_table
from ofa_tf.models import Supernet
from ofa_tf.spaces import Arch, SearchSpace, StageSpec, get_space

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _read(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


@pytest.mark.unit
def test_parser_reads_verbatim_benchmark_model_outputs():
    riscv = parse_benchmark_output(_read("benchmark_model_riscv_qemu_cpu_profiling.txt"))
    assert riscv["runs"] == 50 and riscv["mean_ms"] == pytest.approx(2950.34)
    assert riscv["min_ms"] == pytest.approx(2727.568) and riscv["std_ms"] == pytest.approx(109.798)
    assert riscv["load_ms"] == pytest.approx(17.187) and riscv["first_ms"] == pytest.approx(3512.391)
    assert riscv["peak_memory_mb"] == pytest.approx(46.0859) and riscv["median_ms"] is None

    mi11 = parse_benchmark_output(_read("benchmark_model_mi11_cpu.txt"))
    assert mi11["mean_ms"] == pytest.approx(249.684) and mi11["max_ms"] == pytest.approx(254.474)
    assert mi11["peak_memory_mb"] == pytest.approx(138.809)

    logcat = parse_benchmark_output(_read("benchmark_model_logcat_int8_xnnpack.txt"))
    assert logcat["runs"] == 25  # the steady-state line, not the count=3 warm-up line
    assert logcat["median_ms"] == pytest.approx(141.253) and logcat["p95_ms"] == pytest.approx(187.533)
    assert logcat["warmup_mean_ms"] == pytest.approx(211.669) and logcat["peak_memory_mb"] == pytest.approx(73.4102)


@pytest.mark.unit
def test_parser_reports_a_failed_run_with_the_binarys_error():
    with pytest.raises(OfaError, match="NN API returned error ANEURALNETWORKS_OP_FAILED"):
        parse_benchmark_output(_read("benchmark_model_mi11_nnapi_failed.txt"))


@pytest.mark.integration
def test_missing_adb_is_a_clear_error(tmp_path):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    with pytest.raises(OfaError, match="adb executable not found"):
        AndroidBenchmark(str(binary), adb=str(tmp_path / "no-such-adb"))
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))  # a TFLite header
    done = run_tool("benchmark_latency", f"--models={model}", "--device=android", f"--adb={tmp_path}/no-such-adb",
                    f"--benchmark_binary={binary}")
    assert_one_line_error(done, "adb executable not found")


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("adb") is None, reason="no adb on PATH")
def test_real_adb_answers_without_hanging(tmp_path):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    runner = AndroidBenchmark(str(binary), timeout_s=60)
    try:
        assert runner.check_device()
    except OfaError as e:
        assert "Android device" in str(e) or "adb devices" in str(e)


def _micro_space():
    """One elastic stage with two kernels: 5 distinct ops at one resolution."""
    return SearchSpace(name="micro", stem_widths=(8,), stem_activation="hard_swish",
                       stages=(StageSpec((8,), (1,), (3, 5), (2.0,), 1, "relu", True),),
                       final_expand_ratio=2.0, head_widths=(16,), head_activation="hard_swish",
                       resolutions=(16,))


@pytest.mark.integration
def test_lut_build_save_load_and_predict(tmp_path):
    space = _micro_space()
    table = build_table(space, 10, [16], rounds=2, runs_per_round=20, verbose=False)
    path = str(tmp_path / "lut.json")
    table.save(path)
    loaded = LatencyTable.load(path)
    assert loaded.space_name == "micro" and loaded.resolutions == [16]
    entries = loaded.tables[16]["ops"]
    assert len(entries) == 5 and all(e["count"] == 40 and e["mean"] > 0 and e["std"] >= 0 for e in entries.values())
    arch = space.max_arch(16)
    ops = op_specs(space, arch, 10)
    raw = sum(entries[op.key]["median"] for op in ops) - (len(ops) - 1) * loaded.tables[16]["overhead_ms"]
    assert loaded.predict_ms(arch, calibrated=False) == pytest.approx(raw) and raw > 0
    # Calibrated on the space's two subnets (max, min) timed whole: scale = median(measured / raw sum).
    calibration = loaded.tables[16]["calibration"]
    assert [Arch.from_dict(a) for a in calibration["archs"]] == [arch, space.min_arch(16)]
    ratios = np.array(calibration["measured_ms"]["median"]) / np.array(calibration["raw_ms"]["median"])
    assert calibration["raw_ms"]["median"][0] == pytest.approx(raw, rel=1e-4)
    assert loaded.calibration_scale(16) == pytest.approx(np.median(ratios)) and loaded.calibration_scale(16) > 0
    assert loaded.predict_ms(arch) == pytest.approx(raw * loaded.calibration_scale(16))
    uncalibrated = build_table(space, 10, [16], rounds=1, runs_per_round=2, verbose=False, num_calibration_archs=0)
    assert "calibration" not in uncalibrated.tables[16] and uncalibrated.calibration_scale(16) == 1.0
    with pytest.raises(OfaError, match="no table for resolution 24"):
        loaded.predict_ms(type(arch)(**{**arch.__dict__, "resolution": 24}))
    del loaded.tables[16]["ops"][ops[1].key]
    with pytest.raises(OfaError, match="has no entry for op block"):
        loaded.predict_ms(arch)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(OfaError, match="not a readable ofa_tf latency table"):
        LatencyTable.load(str(tmp_path / "bad.json"))


@pytest.mark.unit
@pytest.mark.parametrize("name", ["ofa_mbv3", "compofa", "proxyless"])
def test_distinct_ops_cover_every_sampled_subnet(name):
    space = get_space(name, resolutions=[32])
    keys = {op.key for op in distinct_op_specs(space, 32, 10)}
    rng = random.Random(0)
    for _ in range(200):
        assert {op.key for op in op_specs(space, space.sample(rng, 32), 10)} <= keys


@pytest.mark.integration
def test_host_benchmark_reports_every_field():
    supernet = Supernet(tiny_space(), 10)
    supernet.build()
    model = keras_to_tflite(supernet.get_subnet("min"))
    result = benchmark_host(model, num_threads=1, warmup=2, runs=20)
    assert result["runs"] == 20 and 0 < result["min_ms"] <= result["median_ms"] <= result["p90_ms"]
    assert result["load_ms"] > 0 and result["first_ms"] > 0
    assert result["peak_memory_mb"] is None or result["peak_memory_mb"] >= 0
    assert np.isfinite(result["mean_ms"])


@pytest.mark.integration
def test_build_lut_rejects_a_negative_calibration_count(tmp_path):
    done = run_tool("build_lut", "--space=ofa_mbv3", "--image_size=32", "--calibration_archs=-1",
                    f"--output={tmp_path / 'lut.json'}")
    assert_one_line_error(done, "--calibration_archs=-1")
    assert not (tmp_path / "lut.json").exists()
