"""Tests of the Intel Extension for TensorFlow version check that runs before TensorFlow loads."""
import os
import subprocess
import sys

import pytest

from conftest import REPO_DIR
from cosmictagger_tf.config import ConfigError
from cosmictagger_tf.distributed import extensions


def test_absent_extension_runs_on_plain_tensorflow(monkeypatch):
    monkeypatch.setattr(extensions, "installed_version",
                        lambda names: "2.15.1" if "tensorflow" in names else None)

    line = extensions.extension_status()

    assert line == ("Intel Extension for TensorFlow is not installed: running on plain "
                    "TensorFlow 2.15.1")


def test_matching_extension_is_loaded():
    line = extensions.extension_status("2.15.1", "2.15.0.0")

    assert line == "Intel Extension for TensorFlow 2.15.0.0 loaded on TensorFlow 2.15.1"


@pytest.mark.parametrize("extension_version", ["2.14.0.1", "2.16.0.0", "3.15.0"])
def test_mismatched_extension_names_both_versions(extension_version):
    with pytest.raises(ConfigError) as raised:
        extensions.extension_status("2.15.1", extension_version)

    message = str(raised.value)
    assert f"Intel Extension for TensorFlow {extension_version} does not fit TensorFlow 2.15.1" \
        in message
    assert "intel-extension-for-tensorflow[cpu]==2.15.0.0" in message
    assert "\n" not in message


def test_versions_read_without_importing():
    code = ("import sys; from cosmictagger_tf.distributed import extensions; "
            "print(extensions.extension_status()); print('tensorflow' in sys.modules)")
    finished = subprocess.run([sys.executable, "-c", code], cwd=REPO_DIR, capture_output=True,
                              text=True, timeout=60)

    status_line, tensorflow_imported = finished.stdout.strip().splitlines()
    assert status_line.startswith("Intel Extension for TensorFlow ")
    assert tensorflow_imported == "False"


def test_train_command_stops_on_mismatched_extension(tmp_path):
    # A distribution record of an older release, found before the installed one on sys.path.
    record = tmp_path / "site" / "intel_extension_for_tensorflow-2.14.0.1.dist-info"
    record.mkdir(parents=True)
    (record / "METADATA").write_text("Metadata-Version: 2.1\n"
                                     "Name: intel_extension_for_tensorflow\nVersion: 2.14.0.1\n")
    environment = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    output_dir = tmp_path / "run"

    finished = subprocess.run([sys.executable, "-m", "cosmictagger_tf.train", "--synthetic",
                               f"--output_dir={output_dir}", "--iterations=1"],
                              cwd=REPO_DIR, capture_output=True, text=True, timeout=120,
                              env=environment)

    assert finished.returncode == 2
    last_line = finished.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: Intel Extension for TensorFlow 2.14.0.1 does not fit "
                                "TensorFlow 2.15")
    assert not output_dir.exists()
