"""The command shows tumorsyn's own warnings as one clean line each (no Python source line)."""
import subprocess
import sys

from tests.conftest import REPO


def test_a_generator_warning_is_one_clean_line(tmp_path):
    # The bundled example's kidney is unenhanced (about 17 HU): a hypodense tumour cannot reach the
    # contrast of real tumours there without going below water, and the generator says so.
    result = subprocess.run([sys.executable, "-m", "tumorsyn", "generate", "--example", "--organ", "kidney",
                             "--seed", "2", "--out", str(tmp_path / "out"), "--quiet"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    warning_lines = [line for line in lines if "warning" in line.lower()]
    assert warning_lines and all(line.startswith("tumorsyn: warning: hypodense kidney tumours") for line in warning_lines)
    assert not any("UserWarning" in line or ".py:" in line for line in lines)
