"""Checks of the shipped launchers, flag files and Dockerfiles, without a cluster or an engine."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_DIR

HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
DOCKERFILES = sorted((REPO_DIR / "docker").glob("*.Dockerfile"))
SCRIPTS = sorted((REPO_DIR / "scripts").rglob("*.sh"))
FLAG_FILES = sorted(p for p in (REPO_DIR / "flags").iterdir() if p.is_file())


def test_dockerfiles_present():
    assert [p.name for p in DOCKERFILES] == ["cpu.Dockerfile", "intel-gpu.Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile):
    if not Path(HADOLINT).exists():
        pytest.fail("hadolint not installed; scripts/install.sh installs it from "
                    "requirements-test.txt")
    result = subprocess.run([HADOLINT, "--no-color", str(dockerfile)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cpu_image_uses_install_script():
    text = (REPO_DIR / "docker" / "cpu.Dockerfile").read_text()
    assert "scripts/install.sh" in text


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_script_syntax(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("flag_file", FLAG_FILES, ids=lambda p: p.name)
def test_flag_file_parses(flag_file):
    from absl import flags

    from cosmictagger_tf import run_flags

    flag_values = flags.FlagValues()
    for name, flag in run_flags.FLAGS._flags().items():
        if name == flag.name and name not in flag_values:
            flag_values[name] = flag
    flag_values([sys.argv[0], f"--flagfile={flag_file}"])
    config = run_flags.config_from_flags(flag_values)
    config.data.synthetic = True
    config.validate()
    assert config.preset in ("uresnet", "a21", "polaris")
