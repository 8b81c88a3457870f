"""Tests of the start-up device checks: precision against the device, and the channels-first probe.

The decisions are tested with injected devices, CPU flags and probe runners. The train command is
run on this machine's CPUs, which have avx512_bf16 and run channels-first layers through oneDNN.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import larcv3_factory as factory
from conftest import REPO_DIR
from cosmictagger_tf.config import ConfigError, RunConfig
from cosmictagger_tf.distributed import device_checks
from test_train_command import TINY_NETWORK, metrics_rows

CPU_WITH_BF16 = {"fpu", "avx512f", "avx512_bf16"}
CPU_WITH_AMX = {"fpu", "avx512f", "amx_bf16", "amx_tile"}
CPU_WITHOUT_BF16 = {"fpu", "avx2", "avx512f"}


def run_train_on_cpu(*flags):
    """Run the train command with every GPU hidden, as on a CPU-only machine."""
    environment = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "cosmictagger_tf.train", *flags], cwd=REPO_DIR,
                          capture_output=True, text=True, timeout=240, env=environment)


def last_line(stderr):
    return stderr.strip().splitlines()[-1]


# ---- precision ----------------------------------------------------------------------------

def test_mixed_precision_needs_an_accelerator():
    message = device_checks.precision_problem("mixed", [], CPU_WITH_BF16)
    assert message.startswith("--precision=mixed (float16 with loss scaling) needs a GPU")
    assert "this process sees only CPUs" in message
    assert message.endswith("use --precision=bfloat16 or --precision=float32 on CPUs")
    assert device_checks.precision_problem("mixed", ["GPU"], CPU_WITHOUT_BF16) is None
    assert device_checks.precision_problem("mixed", ["XPU"], None) is None


@pytest.mark.parametrize("cpu_flags", [CPU_WITH_BF16, CPU_WITH_AMX, None])
def test_bfloat16_allowed_on_bf16_cpus(cpu_flags):
    assert device_checks.precision_problem("bfloat16", [], cpu_flags) is None


def test_bfloat16_rejected_without_cpu_instructions():
    message = device_checks.precision_problem("bfloat16", [], CPU_WITHOUT_BF16)
    assert message.startswith("--precision=bfloat16 needs a CPU with bfloat16 instructions")
    assert "neither avx512_bf16 nor amx_bf16 among its /proc/cpuinfo flags" in message
    assert message.endswith("use --precision=float32 on this CPU")
    assert device_checks.precision_problem("bfloat16", ["GPU"], CPU_WITHOUT_BF16) is None
    assert device_checks.precision_problem("float32", [], CPU_WITHOUT_BF16) is None


def test_check_device_raises_config_error():
    config = RunConfig(precision="bfloat16")
    with pytest.raises(ConfigError, match="avx512_bf16 nor amx_bf16"):
        device_checks.check_device(config, accelerator_kinds=[], cpu_flags=CPU_WITHOUT_BF16)
    device_checks.check_device(config, accelerator_kinds=[], cpu_flags=CPU_WITH_BF16)


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx512f "
                       "avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert device_checks.read_cpu_flags(cpuinfo) == {"fpu", "avx512f", "avx512_bf16"}
    assert device_checks.read_cpu_flags(tmp_path / "absent") is None


def test_mixed_precision_on_cpu_exits_2(tmp_path):
    # A file that is not HDF5: reading it would exit with 1, so status 2 shows the check ran
    # before any data was read.
    notes = factory.write_not_hdf5(tmp_path / "notes.h5")
    output_dir = tmp_path / "mixed"
    result = run_train_on_cpu(f"--data_file={notes}", "--precision=mixed",
                              f"--output_dir={output_dir}", *TINY_NETWORK)
    assert result.returncode == 2, result.stderr[-3000:]
    assert last_line(result.stderr) == (
        f"error: {device_checks.precision_problem('mixed', [], None)}")
    assert "trainable parameters" not in result.stderr
    assert "Traceback" not in result.stderr
    assert not output_dir.exists()


def test_mixed_precision_keeps_run_folder(tmp_path):
    output_dir = tmp_path / "existing"
    output_dir.mkdir()
    (output_dir / "metrics.jsonl").write_text('{"split": "train", "step": 1, "loss": 1.0}\n')
    result = run_train_on_cpu("--synthetic", "--precision=mixed", "--downsample=3",
                              f"--output_dir={output_dir}", *TINY_NETWORK)
    assert result.returncode == 2
    assert "use --precision=bfloat16 or --precision=float32 on CPUs" in last_line(result.stderr)
    assert sorted(path.name for path in output_dir.iterdir()) == ["metrics.jsonl"]
    assert (output_dir / "metrics.jsonl").read_text() == \
        '{"split": "train", "step": 1, "loss": 1.0}\n'


# ---- channels-first probe -----------------------------------------------------------------

def failing_probe(precision):
    raise tf.errors.InvalidArgumentError(
        None, None, "Graph execution error:\n\nDetected at node pool/MaxPool defined at:\n"
        "Default MaxPoolingOp only supports NHWC on device type CPU\n\t [[{{node pool}}]]")


def test_probe_failure_means_channels_last():
    message = device_checks.channels_first_problem("float32", failing_probe)
    assert message == (
        "--data_format=channels_first cannot run on this device: a channels-first convolution, "
        "pooling or batch normalisation failed (Default MaxPoolingOp only supports NHWC on "
        "device type CPU); use --data_format=channels_last")


@pytest.mark.parametrize("difference", [0.5, float("nan")])
def test_probe_wrong_results_mean_channels_last(difference):
    message = device_checks.channels_first_problem("float32", lambda precision: difference)
    assert message.startswith("--data_format=channels_first gives wrong results on this device")
    assert message.endswith("use --data_format=channels_last")


def test_probe_runs_only_for_channels_first():
    calls = []

    def probe(precision):
        calls.append(precision)
        return 0.0

    device_checks.check_device(RunConfig(), [], CPU_WITH_BF16, run_probe=probe)
    assert calls == []
    config = RunConfig(precision="bfloat16", data_format="channels_first")
    device_checks.check_device(config, [], CPU_WITH_BF16, run_probe=probe)
    assert calls == ["bfloat16"]
    with pytest.raises(ConfigError, match="use --data_format=channels_last"):
        device_checks.check_device(config, [], CPU_WITH_BF16, run_probe=failing_probe)


def test_probe_passes_on_this_cpu():
    difference = device_checks.probe_channels_first("float32")
    assert 0.0 <= difference <= device_checks.PROBE_TOLERANCE
    assert device_checks.channels_first_problem("float32") is None


def test_train_command_channels_first_step(tmp_path):
    path, _, _ = factory.make_valid_file(tmp_path / "events.h5", num_events=4, height=32,
                                         width=64)
    output_dir = tmp_path / "run"
    result = run_train_on_cpu(f"--data_file={path}", "--data_format=channels_first",
                              "--downsample=0", "--iterations=1", f"--output_dir={output_dir}",
                              *TINY_NETWORK)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "precision float32, channels_first" in result.stderr
    rows = metrics_rows(output_dir)
    assert [row["step"] for row in rows] == [1]
    assert np.isfinite(rows[0]["loss"])
    assert rows[0]["loss"] > 0
    config = json.loads((output_dir / "config.json").read_text())
    assert config["data_format"] == "channels_first"


def test_invalid_data_format_flag_exits_2(tmp_path):
    result = run_train_on_cpu("--synthetic", "--data_format=nchw",
                              f"--output_dir={tmp_path / 'bad'}")
    assert result.returncode == 2
    assert "channels_last" in last_line(result.stderr)
    assert not (tmp_path / "bad").exists()
