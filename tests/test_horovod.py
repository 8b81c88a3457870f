"""Two-rank tests under ``horovodrun -np 2 --gloo``: identical state, same losses as one rank,
event coverage per epoch, rank-0-only outputs, resume on both ranks, and a killed rank."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import larcv3_factory as factory
from conftest import REPO_DIR

HOROVODRUN = Path(sys.executable).parent / "horovodrun"
TINY_NETWORK = ["--preset=uresnet", "--n_initial_filters=4", "--network_depth=3",
                "--blocks_per_layer=1", "--blocks_deepest_layer=1", "--blocks_final=1",
                "--bottleneck_deepest=16", "--downsample=0"]
# Without batch norm and with plain mean losses, the mean over ranks of per-rank losses and
# gradients equals one rank's loss and gradient on the whole minibatch.
COMPARABLE = ["--normalization=none", "--loss_balance_scheme=none", "--deterministic",
              "--lr_schedule=constant", "--learning_rate=1e-3", "--shuffle=false"]

pytestmark = pytest.mark.skipif(not HOROVODRUN.exists(),
                                reason=f"horovodrun not found beside {sys.executable}; "
                                       "install Horovod with scripts/install.sh")


def horovodrun(*command, timeout=300):
    launcher = [str(HOROVODRUN), "-np", "2", "--gloo", "-H", "localhost:2", *command]
    return subprocess.run(launcher, cwd=REPO_DIR, capture_output=True, text=True,
                          timeout=timeout)


def train_two_ranks(*flags):
    return horovodrun(sys.executable, "-m", "cosmictagger_tf.train", *flags)


def train_one_rank(*flags):
    command = [sys.executable, "-m", "cosmictagger_tf.train", *flags]
    return subprocess.run(command, cwd=REPO_DIR, capture_output=True, text=True, timeout=300)


def train_losses(output_dir):
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows if row["split"] == "train"}


def rank_summaries(output_dir):
    return [json.loads((output_dir / "ranks" / f"rank{rank}.json").read_text())
            for rank in (0, 1)]


@pytest.fixture(scope="module")
def event_file(tmp_path_factory):
    """Seven events: an odd count, so an epoch does not divide over two ranks."""
    folder = tmp_path_factory.mktemp("horovod")
    path, _, _ = factory.make_valid_file(folder / "events.h5", num_events=7, height=64,
                                         width=128, seed=3)
    return path


@pytest.fixture(scope="module")
def straight_run(event_file, tmp_path_factory):
    """Five steps on two ranks at global minibatch 2, with per-rank summaries."""
    output_dir = tmp_path_factory.mktemp("straight") / "run"
    result = train_two_ranks(f"--data_file={event_file}", "--minibatch_size=2",
                             "--iterations=5", f"--output_dir={output_dir}", "--rank_summaries",
                             "--checkpoint_iteration=5", *TINY_NETWORK, *COMPARABLE)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return output_dir, result


def test_ranks_hold_identical_weights(straight_run):
    output_dir, _ = straight_run
    first, second = rank_summaries(output_dir)
    assert first["size"] == 2
    assert first["last_step"] == second["last_step"] == 5
    assert first["trainable_sha256"] == second["trainable_sha256"]
    assert first["optimizer_sha256"] == second["optimizer_sha256"]


def test_ranks_report_identical_metrics(straight_run):
    output_dir, _ = straight_run
    first, second = rank_summaries(output_dir)
    assert first["last_train"] == second["last_train"]
    assert "miou" in first["last_train"]


def test_only_rank_zero_writes(straight_run):
    output_dir, result = straight_run
    assert sorted(train_losses(output_dir)) == [1, 2, 3, 4, 5]
    assert len(list((output_dir / "tensorboard" / "train").iterdir())) == 1
    assert sorted(p.name for p in (output_dir / "checkpoints").glob("*.index")) == ["ckpt-5.index"]
    output = (result.stdout + result.stderr).splitlines()
    assert any(line.startswith("[0]") and " INFO " in line for line in output)
    assert not any(line.startswith("[1]") and " INFO " in line for line in output)


def test_two_ranks_match_one_rank(straight_run, event_file, tmp_path):
    output_dir, _ = straight_run
    single_dir = tmp_path / "single"
    result = train_one_rank(f"--data_file={event_file}", "--minibatch_size=2", "--iterations=5",
                            f"--output_dir={single_dir}", *TINY_NETWORK, *COMPARABLE)
    assert result.returncode == 0, result.stderr[-4000:]
    two_ranks, one_rank = train_losses(output_dir), train_losses(single_dir)
    for step in range(1, 6):
        assert two_ranks[step] == pytest.approx(one_rank[step], rel=1e-4)


def test_resume_continues_on_both_ranks(straight_run, event_file, tmp_path):
    straight_dir, _ = straight_run
    output_dir = tmp_path / "resumed"
    common = [f"--data_file={event_file}", "--minibatch_size=2", f"--output_dir={output_dir}",
              "--rank_summaries", "--checkpoint_iteration=3", *TINY_NETWORK, *COMPARABLE]

    first = train_two_ranks(*common, "--iterations=3")
    assert first.returncode == 0, first.stdout[-4000:]
    second = train_two_ranks(*common, "--iterations=5")
    assert second.returncode == 0, second.stdout[-4000:]

    resumed, straight = train_losses(output_dir), train_losses(straight_dir)
    assert sorted(resumed) == [1, 2, 3, 4, 5]
    for step in (4, 5):
        assert resumed[step] == pytest.approx(straight[step], rel=1e-5)
    ranks = rank_summaries(output_dir)
    assert ranks[0]["first_step"] == ranks[1]["first_step"] == 3
    assert ranks[0]["trainable_sha256"] == ranks[1]["trainable_sha256"]


def test_each_event_once_per_epoch(event_file, tmp_path):
    script = REPO_DIR / "tests" / "horovod_scripts" / "events_per_rank.py"
    steps = 7
    result = horovodrun(sys.executable, str(script), str(event_file), "1", str(steps),
                        str(tmp_path))
    assert result.returncode == 0, result.stdout[-4000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len(ranks[0]["steps"]) == len(ranks[1]["steps"]) == steps

    stream = [event for step in range(steps) for rank in ranks
              for event in rank["steps"][step]]
    assert sorted(stream[:7]) == list(range(7))
    assert sorted(stream[7:14]) == list(range(7))


def find_rank_process(rank, marker):
    """Return the pid of the training process of ``rank`` whose command line has ``marker``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in command and "cosmictagger_tf.train" in command \
                and f"HOROVOD_RANK={rank}".encode() in environment:
            return int(entry.name)
    return None


def test_killed_rank_ends_job(tmp_path):
    output_dir = tmp_path / "killed"
    launcher = [str(HOROVODRUN), "-np", "2", "--gloo", "-H", "localhost:2", sys.executable,
                "-m", "cosmictagger_tf.train", "--synthetic", "--iterations=100000",
                "--downsample=3", "--log_iteration=1", f"--output_dir={output_dir}",
                *TINY_NETWORK[:-1]]
    job = subprocess.Popen(launcher, cwd=REPO_DIR, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        for line in job.stdout:
            if "INFO step 2 " in line:
                break
        victim = find_rank_process(1, str(output_dir))
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        status = job.wait(timeout=120)
        elapsed = time.monotonic() - killed_at
    finally:
        if job.poll() is None:
            job.kill()
    assert status != 0
    assert elapsed < 60


def test_bfloat16_compression_rejected(tmp_path):
    result = train_two_ranks("--synthetic", "--iterations=1", "--downsample=3",
                             "--horovod_compression=bf16", f"--output_dir={tmp_path / 'bf16'}",
                             *TINY_NETWORK[:-1])
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "[0]<stderr>:error: --horovod_compression=bf16 needs a Horovod build" in output
