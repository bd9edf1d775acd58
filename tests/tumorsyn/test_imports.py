"""Import hygiene: the rules path stays light, and the core never imports a pipeline package."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def test_rules_generate_does_not_import_torch(tmp_path):
    code = ("import sys; from tumorsyn.cli.main import main; "
            f"rc = main(['generate', '--example', '--organ', 'liver', '--quiet', '--out', {str(tmp_path / 'o')!r}]); "
            "print(rc, 'torch' in sys.modules, 'monai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.split() == ["0", "False", "False"]


def test_core_never_imports_pipelines():
    for path in (REPO / "tumorsyn").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root not in {"synthesize", "segment", "train_diffusion", "reader_study"}, (path, name)


def test_diffusers_never_imports_torchvision():
    # torchvision (pulled in by the nnunet extra) cannot load beside a CPU-only torch; tumorsyn's
    # diffusers imports must not touch it, whether or not it is installed.
    pytest.importorskip("diffusers", reason="the diffusion extra is not installed")
    code = ("import sys\n"
            "from tumorsyn.generators.diffusion.schedulers import training_scheduler\n"
            "training_scheduler(prediction_type='epsilon')\n"
            "from diffusers.training_utils import EMAModel  # what stage 2 of train-diffusion imports\n"
            "assert 'torchvision' not in sys.modules, 'torchvision was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
