"""End-to-end tests of ``python -m cosmictagger_tf.train`` in a subprocess, as users run it."""
import json
import subprocess
import sys

import pytest

import larcv3_factory as factory
from conftest import REPO_DIR

TINY_NETWORK = ["--preset=uresnet", "--n_initial_filters=4", "--network_depth=3",
                "--blocks_per_layer=1", "--blocks_deepest_layer=1", "--blocks_final=1",
                "--bottleneck_deepest=16"]


def run_train(*flags, timeout=240):
    command = [sys.executable, "-m", "cosmictagger_tf.train", *flags]
    return subprocess.run(command, cwd=REPO_DIR, capture_output=True, text=True,
                          timeout=timeout)


def metrics_rows(output_dir, split="train"):
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["split"] == split]


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    path, _, _ = factory.make_valid_file(folder / "events.h5", num_events=6, height=64,
                                         width=128)
    return path


def test_train_then_resume_continues(small_file, tmp_path):
    output_dir = tmp_path / "run"
    common = [f"--data_file={small_file}", f"--aux_file={small_file}", "--downsample=0",
              f"--output_dir={output_dir}", "--checkpoint_iteration=2", "--aux_iteration=2",
              *TINY_NETWORK]

    first = run_train(*common, "--iterations=3")
    assert first.returncode == 0, first.stderr[-3000:]
    assert [row["step"] for row in metrics_rows(output_dir)] == [1, 2, 3]
    assert (output_dir / "checkpoints" / "ckpt-3.index").exists()
    config = json.loads((output_dir / "config.json").read_text())
    assert config["network"]["n_initial_filters"] == 4

    second = run_train(*common, "--iterations=5")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr
    assert "at step 3" in second.stderr
    assert [row["step"] for row in metrics_rows(output_dir)] == [1, 2, 3, 4, 5]
    assert [row["step"] for row in metrics_rows(output_dir, "aux")] == [2, 3, 4, 5]
    assert (output_dir / "checkpoints" / "ckpt-5.index").exists()


def test_train_real_sample_steps(sample_path, tmp_path):
    output_dir = tmp_path / "real"
    result = run_train(f"--data_file={sample_path}", "--downsample=3", "--iterations=2",
                       f"--output_dir={output_dir}", *TINY_NETWORK)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = metrics_rows(output_dir)
    assert len(rows) == 2
    assert all(0.0 < row["loss"] < 100.0 for row in rows)
    assert "opened 1 file(s) with 5 events" in result.stderr


def test_startup_log_states_parameter_counts(tmp_path):
    result = run_train("--synthetic", "--preset=a21", "--downsample=3", "--iterations=1",
                       "--network_depth=4", f"--output_dir={tmp_path / 'synthetic'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trainable parameters" in result.stderr
    assert "with batch-norm statistics" in result.stderr


def test_indivisible_image_exits_2(tmp_path):
    result = run_train("--synthetic", "--downsample=2", "--network_depth=7",
                       f"--output_dir={tmp_path / 'bad'}")
    assert result.returncode == 2
    assert "not divisible by 2**network_depth" in result.stderr
    assert not (tmp_path / "bad").exists()


def test_default_dataset_simulated_once(tmp_path):
    cache_dir = tmp_path / "cache"
    common = [f"--cache_dir={cache_dir}", "--default_train_events=6",
              "--default_validation_events=2", "--downsample=3", "--iterations=2",
              "--aux_iteration=2", *TINY_NETWORK]

    first = run_train(*common, f"--output_dir={tmp_path / 'first'}")
    assert first.returncode == 0, first.stderr[-3000:]
    files = sorted(cache_dir.glob("*.h5"))
    assert len(files) == 2
    assert "simulating 6 train events" in first.stderr
    assert len(metrics_rows(tmp_path / "first", "aux")) == 1
    modified = [path.stat().st_mtime_ns for path in files]

    second = run_train(*common, f"--output_dir={tmp_path / 'second'}")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "reusing" in second.stderr
    assert [path.stat().st_mtime_ns for path in sorted(cache_dir.glob("*.h5"))] == modified


def test_missing_producer_exits_1(small_file, tmp_path):
    result = run_train(f"--data_file={small_file}", "--label_producer=nosuchlabels",
                       "--downsample=0", f"--output_dir={tmp_path / 'producer'}",
                       *TINY_NETWORK)
    assert result.returncode == 1
    assert "'nosuchlabels' not found" in result.stderr
    assert "sbnd_cosmicseg, sbndwire" in result.stderr
    assert "Traceback" not in result.stderr


def test_resume_other_network_exits_2(small_file, tmp_path):
    output_dir = tmp_path / "run"
    first = run_train(f"--data_file={small_file}", "--downsample=0", "--iterations=1",
                      f"--output_dir={output_dir}", *TINY_NETWORK)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_train(f"--data_file={small_file}", "--downsample=0", "--iterations=2",
                       f"--output_dir={output_dir}", *TINY_NETWORK, "--n_initial_filters=8")
    assert second.returncode == 2
    assert "n_initial_filters=4 (now 8)" in second.stderr
    assert "Traceback" not in second.stderr


def test_resume_drops_rows_of_rerun_steps(small_file, tmp_path):
    output_dir = tmp_path / "run"
    common = [f"--data_file={small_file}", "--downsample=0", f"--output_dir={output_dir}",
              *TINY_NETWORK]
    first = run_train(*common, "--iterations=2")
    assert first.returncode == 0, first.stderr[-3000:]
    # Rows of steps that ran after the last checkpoint, as a killed run leaves them.
    stale = [{"split": "train", "step": step, "loss": -1.0} for step in (3, 4)]
    with open(output_dir / "metrics.jsonl", "a") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in stale)

    second = run_train(*common, "--iterations=3")
    assert second.returncode == 0, second.stderr[-3000:]
    rows = metrics_rows(output_dir)
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert rows[-1]["loss"] > 0
    assert "dropped 2 metrics rows" in second.stderr


def test_synthetic_with_files_exits_2(small_file, tmp_path):
    result = run_train("--synthetic", f"--data_file={small_file}",
                       f"--output_dir={tmp_path / 'both'}")
    assert result.returncode == 2
    assert "--synthetic and --data_file exclude each other" in result.stderr


def test_unknown_flag_exits_2(tmp_path):
    result = run_train("--minibatchsize=4", f"--output_dir={tmp_path / 'typo'}")
    assert result.returncode == 2
    assert "minibatch_size" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_training_flags():
    result = run_train("--help")
    assert "--minibatch_size" in result.stdout + result.stderr
    assert "--loss_balance_scheme" in result.stdout + result.stderr


def test_directory_as_data_file_exits_1(tmp_path):
    result = run_train(f"--data_file={tmp_path}", f"--output_dir={tmp_path / 'dir'}")
    assert result.returncode == 1
    assert "is a directory" in result.stderr
    assert not (tmp_path / "dir").exists()
