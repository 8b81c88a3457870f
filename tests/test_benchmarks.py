"""Each benchmark command runs at a small size and prints the JSON fields RESULTS.md quotes."""
import json
import subprocess
import sys

import pytest

import larcv3_factory as factory
from conftest import REPO_DIR

# Convolution multiply-accumulates of one a21 event at 640 x 1024 per plane, forward pass.
A21_FORWARD_GMAC = 15.84920576


def run_benchmark(script, *flags, timeout=300):
    finished = subprocess.run([sys.executable, f"benchmarks/{script}", *flags], cwd=REPO_DIR,
                              capture_output=True, text=True, timeout=timeout)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(finished.stdout)


def test_train_throughput_fields():
    result = run_benchmark("train_throughput.py", "--preset=a21", "--downsample=2",
                           "--warmup_steps=1", "--steps=1", "--repeats=2")

    assert result["image_shape"] == [320, 512]
    assert len(result["events_per_second_repeats"]) == 2
    assert result["events_per_second"] > 0
    # Forward plus two backward passes, 2 FLOPs per MAC, a quarter of the pixels.
    assert result["training_gflop_per_event"] == pytest.approx(6 * A21_FORWARD_GMAC / 4)
    assert 0 < result["fraction_of_limit"] < 1
    assert result["achieved_gflops"] == pytest.approx(
        result["training_gflop_per_event"] * result["events_per_second"])
    assert 0.1 < result["peak_memory_gb"] < 20
    assert result["machine"]["cores"] >= 1
    assert result["machine"]["tensorflow"].startswith("2.15")


def test_inference_over_training_ratio():
    result = run_benchmark("inference_throughput.py", "--preset=a21", "--downsample=2",
                           "--warmup_steps=1", "--steps=2", "--repeats=1",
                           "--training_steps=1")

    assert result["inference_gflop_per_event"] == pytest.approx(2 * A21_FORWARD_GMAC / 4)
    assert result["events_per_second"] > 0
    assert result["training_events_per_second"] > 0
    assert result["inference_over_training"] == pytest.approx(
        result["events_per_second"] / result["training_events_per_second"])


def test_input_pipeline_per_core_count(tmp_path):
    events_file = tmp_path / "events.h5"
    factory.make_valid_file(events_file, num_events=6, height=32, width=64)

    result = run_benchmark("input_pipeline.py", f"--data_file={events_file}",
                           "--simulated_events=0", "--cores=1,2", "--processes=2",
                           "--downsample=1", "--warmup_minibatches=1", "--minibatches=3",
                           "--repeats=2")

    threaded, concurrent = result["results"][:2], result["results"][2]
    assert [(entry["input"], entry["cores"]) for entry in threaded] == [("real", 1), ("real", 2)]
    for entry in threaded:
        assert entry["file_events"] == 6
        assert entry["image_shape"] == [16, 32]
        assert entry["events_per_second"] > 0
        assert len(entry["events_per_second_repeats"]) == 2
    assert concurrent["processes"] == 2
    assert len(concurrent["events_per_second_per_process"]) == 2
    assert concurrent["events_per_second"] == pytest.approx(
        sum(concurrent["events_per_second_per_process"]))


def test_profile_by_layer_and_level():
    result = run_benchmark("profile_step.py", "--preset=a21", "--downsample=2",
                           "--warmup_steps=1", "--steps=1")

    by_type = result["by_layer_type_ms"]
    assert by_type["convolution"] > 0
    assert by_type["batch_norm"] > 0
    levels = {key.split("/")[0] for key in result["by_level_and_type_ms"]}
    assert {"initial", "level0", "level5", "deepest", "loss_metrics"} <= levels
    assert result["kernel_ms_per_step"] == pytest.approx(sum(by_type.values()), rel=1e-3)
