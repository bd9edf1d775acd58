"""One device resolver for every path: syntax, GPU checks (on a CPU machine), and the device reaching the kernel.

No GPU is needed: the number of GPUs a library sees is monkeypatched, so ``cuda:1`` is resolved
(not executed); a spy on the automaton's entry records the device every path hands it and
then grows the tumour on the CPU.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import tumorsyn  # noqa: E402
import tumorsyn.device as device_mod  # noqa: E402
from tumorsyn.device import Device, check_device, parse_device, resolve_device  # noqa: E402
from tumorsyn.errors import ConfigError  # noqa: E402
from tumorsyn.generators import get_generator  # noqa: E402

from tests.conftest import make_phantom  # noqa: E402


def gpus(monkeypatch, count: int) -> None:
    """Pretend every library sees ``count`` real CUDA GPUs (not numba's simulator, whatever the shell exports)."""
    monkeypatch.setattr(device_mod, "cuda_device_count", lambda backend: count)
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)


@pytest.mark.parametrize("given, text", [("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1"),
                                         (" CUDA:01 ", "cuda:1"), (None, "auto"), (Device("cuda", 3), "cuda:3")])
def test_requests_are_read_one_way(given, text):
    assert parse_device(given) == text


def test_a_torch_device_is_read_like_its_text():
    torch = pytest.importorskip("torch")
    assert parse_device(torch.device("cuda", 1)) == "cuda:1"
    assert parse_device(torch.device("cpu")) == "cpu"


@pytest.mark.parametrize("bad", ["tpu", "gpu", "cuda:", "cuda:-1", "cpu:0", "auto:1", "", 1, 0.5])
def test_bad_requests_name_the_value_and_the_forms(bad):
    with pytest.raises(ConfigError, match=r"device must be auto, cpu, cuda or cuda:N .*got"):
        parse_device(bad)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_cuda_n_resolves_to_gpu_n_where_there_are_enough(monkeypatch, backend):
    gpus(monkeypatch, 2)
    assert resolve_device("cuda:1", backend=backend) == Device("cuda", 1)
    assert str(resolve_device("cuda:1", backend=backend)) == "cuda:1"
    assert resolve_device("cuda", backend=backend) == Device("cuda")
    assert resolve_device("auto", backend=backend) == Device("cuda")
    assert resolve_device("cpu", backend=backend) == Device("cpu")
    with pytest.raises(ConfigError, match=r"device 'cuda:2' asked for, but only 2 CUDA GPU\(s\) are visible"):
        resolve_device("cuda:2", backend=backend)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_cuda_without_a_gpu_is_one_clear_line(monkeypatch, backend):
    gpus(monkeypatch, 0)
    assert resolve_device("auto", backend=backend) == Device("cpu")
    with pytest.raises(ConfigError, match="device 'cuda:1' asked for, but no CUDA GPU is usable here") as info:
        resolve_device("cuda:1", backend=backend)
    assert "\n" not in str(info.value)


def test_auto_never_picks_the_cuda_simulator(monkeypatch):
    gpus(monkeypatch, 1)
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    assert resolve_device("auto", backend="numba") == Device("cpu")
    assert resolve_device("cuda", backend="numba") == Device("cuda")


def test_check_leaves_auto_for_where_the_work_runs(monkeypatch):
    def no_probe(backend):
        raise AssertionError("auto must not look for a GPU when an object is built")

    monkeypatch.setattr(device_mod, "cuda_device_count", no_probe)
    assert check_device("auto", backend="numba") == "auto"
    assert check_device("cuda:7") == "cuda:7"  # no backend: syntax only


def test_generators_refuse_a_missing_gpu_when_built(monkeypatch):
    gpus(monkeypatch, 0)
    with pytest.raises(ConfigError, match="'cuda:0' asked for, but no CUDA GPU"):
        get_generator("ca", device="cuda:0")
    assert get_generator("rules", device="cuda:0").device == "cuda:0"  # runs on the CPU whatever is asked
    gpus(monkeypatch, 2)
    assert get_generator("ca", device="cuda:1").device == "cuda:1"


def test_transform_refuses_a_missing_gpu_at_construction(monkeypatch):
    pytest.importorskip("monai")
    from tumorsyn.transforms import RandTumorSynthesisd

    gpus(monkeypatch, 0)
    with pytest.raises(ConfigError, match="RandTumorSynthesisd: device 'cuda:0' asked for, but no CUDA GPU"):
        RandTumorSynthesisd(keys=("image", "label"), organ="liver", method="ca", device="cuda:0")
    gpus(monkeypatch, 2)
    torch = pytest.importorskip("torch")
    t = RandTumorSynthesisd(keys=("image", "label"), organ="liver", method="ca", device=torch.device("cuda:1"))
    assert t.device == "cuda:1"


def test_torch_paths_use_the_same_resolver(monkeypatch):
    torch = pytest.importorskip("torch")
    from segment.predict import resolve_device as segment_device
    from tumorsyn.generators.diffusion.model_folder import resolve_device as model_device

    gpus(monkeypatch, 2)
    assert model_device("cuda:1") == torch.device("cuda:1")
    assert segment_device("cuda:1") == torch.device("cuda:1")
    gpus(monkeypatch, 0)
    assert segment_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="--device: device 'cuda:1' asked for, but no CUDA GPU"):
        segment_device("cuda:1")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        model_device("cuda")


# --- the chosen device reaches the automaton on every path ------------------------------------
@pytest.fixture
def grown(monkeypatch):
    """Record the device of every automaton run, then grow on the CPU (two GPUs pretended)."""
    from tumorsyn.generators.ca import grow

    real = grow.grow_ca
    seen = []

    def spy(*args, device="auto", **kwargs):
        seen.append(device)
        return real(*args, device="cpu", **kwargs)

    gpus(monkeypatch, 2)
    monkeypatch.setattr(grow, "grow_ca", spy)
    return seen


@pytest.fixture(scope="module")
def liver():
    ct, organ, spacing = make_phantom(shape=(48, 48, 32), spacing=(1.5, 1.5, 2.0), organ_hu=60.0,
                                      radii_mm=(28.0, 26.0, 24.0))
    spec = tumorsyn.sample_spec(organ, spacing, organ="liver", method="ca", size_mm=(8, 10), ct_hu=ct, rng=1,
                                device="cpu")
    return ct, organ, spacing, spec


@pytest.mark.parametrize("where", ["cpu", "cuda:1"])
def test_library_paths_hand_the_device_to_the_kernel(grown, liver, where):
    from tumorsyn.generators.ca import grow_trajectory

    ct, organ, spacing, spec = liver
    tumorsyn.sample_specs(organ, spacing, count=2, organ="liver", method="ca", size_mm=(6, 8), ct_hu=ct, rng=2,
                          device=where)
    tumorsyn.synthesize(ct, organ, spacing, spec, device=where)
    tumorsyn.apply.render_label(spec, organ, ct_hu=ct, device=where)
    grow_trajectory(ct, organ, spacing, spec, save_steps=(2, 4), device=where)
    assert len(grown) >= 5 and set(grown) == {where}


def test_transform_hands_the_device_to_the_kernel(grown, liver):
    pytest.importorskip("monai")
    from tumorsyn.transforms import RandTumorSynthesisd

    ct, organ, spacing, _ = liver
    t = RandTumorSynthesisd(keys=("image", "label"), organ="liver", label_preset="binary", method="ca",
                            size_mm=(6, 8), prob=1.0, count=2, spacing_mm=spacing, device="cuda:1")
    t.set_random_state(seed=0)
    out = t({"image": ct[None], "label": organ[None].astype(np.uint8)})
    assert out["tumor_specs"] and set(grown) == {"cuda:1"}


@pytest.mark.parametrize("where", ["cpu", "cuda:1"])
def test_generate_hands_the_device_to_the_kernel_every_time(grown, tmp_path, capsys, where):
    """`tumorsyn generate --method ca --device cpu` grew the automaton nine times, eight with 'auto'."""
    from tumorsyn.cli.main import main

    code = main(["generate", "--example", "--organ", "liver", "--method", "ca", "--size-mm", "8-12", "--seed", "3",
                 "--preview", "--save-steps", "3,6", "--device", where, "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert len(grown) >= 4 and set(grown) == {where}
