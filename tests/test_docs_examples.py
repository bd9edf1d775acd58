"""Every example of README.md and docs/*.md runs as written (issue 19).

Each fenced block of the docs has one entry in ``FATES`` below, keyed by its document and first line:

- ``run``: the block runs exactly as written in a fresh temporary folder (shell blocks with bash and the
  venv's ``tumorsyn`` entry point first on PATH; Python blocks with the venv's Python). The input files it
  names are staged there first under the names the docs use (``SUBSTITUTIONS``: placeholder -> what the test
  puts there). Nothing in the block's text is changed.
- ``substituted``: as ``run``, but part of the text is replaced (``replace``; each with its reason), or a
  Python fragment gets a prelude defining the names it assumes from an earlier example.
- ``not run``: a synopsis, a file listing or a config fragment, with the reason (synopses are checked
  against ``--help`` by tests/test_docs_synopses.py), or a command another test runs (named).

A new block, or a block whose first line changed, has no entry and fails ``test_every_block_has_a_fate``
until it is classified here; an entry whose block is gone fails too. Blocks needing the real scans of
../shared/data/real skip with the reason where those are absent.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import EXAMPLE_CT, EXAMPLE_LABELS, REPO, real_path

DOCS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    text: str

    @property
    def key(self) -> tuple[str, str]:
        return self.doc, self.text.strip().splitlines()[0].strip()


def doc_blocks() -> list[Block]:
    """Every fenced block (```lang ... ```, also indented inside lists) of the docs, in order."""
    blocks = []
    for doc in DOCS:
        text = (REPO / doc).read_text()
        for m in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```", text, re.S | re.M):
            body = "\n".join(line[len(m.group(1)):] for line in m.group(3).splitlines())
            blocks.append(Block(doc, text[:m.start()].count("\n") + 1, m.group(2), body))
    return blocks


@dataclass(frozen=True)
class Fate:
    kind: str                                   # "run" | "substituted" | "not run"
    reason: str = ""
    stage: tuple[str, ...] = ()                 # SUBSTITUTIONS placed in the temporary folder first
    replace: tuple[tuple[str, str], ...] = ()   # (text in the block, text run instead)
    prelude: str = ""                           # Python: names the fragment takes from an earlier example
    before: tuple[tuple[str, str], ...] = ()    # keys of blocks run first in the same folder
    timeout: int = 120
    slow: str = ""                              # why it is marked slow (pytest -m "not slow" leaves it out)


# ----------------------------------------------------------------- substitution table
# placeholder in the docs -> what the test stages under that name (a function of the temporary folder).

def _copy(src: Path):
    return lambda dst: shutil.copy(src, dst)


def _link_real(*parts: str):
    def stage(dst: Path) -> None:
        dst.symlink_to(real_path(*parts))
    return stage


def _example_decathlon(dst: Path) -> None:
    """A decathlon folder (dataset.json, imagesTr/, labelsTr/) holding the bundled example, liver = 1."""
    import nibabel as nib

    (dst / "imagesTr").mkdir(parents=True)
    (dst / "labelsTr").mkdir()
    shutil.copy(EXAMPLE_CT, dst / "imagesTr" / "liver_0.nii.gz")
    labels = nib.load(EXAMPLE_LABELS)
    liver = (np.asarray(labels.dataobj) == 5).astype(np.uint8)
    nib.save(nib.Nifti1Image(liver, labels.affine), dst / "labelsTr" / "liver_0.nii.gz")
    (dst / "dataset.json").write_text(json.dumps({"name": "example", "labels": {"0": "background", "1": "liver"},
                                                  "training": [{"image": "./imagesTr/liver_0.nii.gz",
                                                                "label": "./labelsTr/liver_0.nii.gz"}]}))


def _lesions_decathlon(dst: Path) -> None:
    """A decathlon folder of two bundled-example scans holding rules tumours (label map 1 liver, 2 tumour): the
    lesions the command describes (real data would take minutes here; the docs mean real tumours)."""
    made = dst.parent / "lesion_scans"
    if not made.exists():
        _generated("--label-map", "--seed", "5")(made)
    (dst / "imagesTr").mkdir(parents=True)
    (dst / "labelsTr").mkdir()
    training = []
    for ct in sorted(made.glob("*_ct.nii.gz"))[:2]:
        case = ct.name[: -len("_ct.nii.gz")]
        shutil.copy(ct, dst / "imagesTr" / f"{case}.nii.gz")
        shutil.copy(made / f"{case}_label.nii.gz", dst / "labelsTr" / f"{case}.nii.gz")
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    (dst / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "liver", "2": "tumour"},
                                                  "training": training}))


def _cases_csv(dst: Path) -> None:
    """Two rows (the bundled example twice, as cases a and b)."""
    dst.write_text(f"ct,labels,case_id\n{EXAMPLE_CT},{EXAMPLE_LABELS},a\n{EXAMPLE_CT},{EXAMPLE_LABELS},b\n")


def _masks(seed_shift: int, drop: bool = False):
    """Two cases of 48^3 voxels at 1 mm holding a 14 mm and a 6 mm ball (moved by ``seed_shift``)."""
    def stage(dst: Path) -> None:
        import nibabel as nib

        dst.mkdir()
        idx = np.indices((48, 48, 48))
        for case in ("case_1", "case_2"):
            ball = lambda c, r: sum((idx[a] - c[a]) ** 2 for a in range(3)) <= r * r  # noqa: E731
            mask = ball((16 + seed_shift, 24, 24), 7) | (ball((36, 30, 24), 3) if not drop else False)
            nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), dst / f"{case}.nii.gz")
    return stage


def _generated(*args: str):
    """A ``tumorsyn generate`` output folder on the bundled example."""
    def stage(dst: Path) -> None:
        _tumorsyn("generate", "--example", "--organ", "liver", "--size-mm", "10-25", "--per-scan", "3", *args,
                  "--quiet", "--out", str(dst))
    return stage


def _lesion_csv(dst: Path) -> None:
    """A lesion CSV (ct, lesion): the bundled-example scans with rules tumours, one row per scan."""
    made = dst.parent / "lesion_scans"
    if not made.exists():
        _generated("--label-map", "--seed", "5")(made)
    rows = [f"{ct},{ct.with_name(ct.name.replace('_ct.nii.gz', '_label.nii.gz'))}"  # a label map: 1 liver, 2 tumour
            for ct in sorted(made.glob("*_ct.nii.gz"))]
    dst.write_text("ct,lesion\n" + "\n".join(rows) + "\n")


def _tiny_diffusion_sources(dst: Path) -> None:
    """Phantom tumour scans for the tiny diffusion run (the diffusion tests' own)."""
    from tests.train_diffusion.diffusion_helpers import write_phantom_case

    import yaml

    sources = [write_phantom_case(dst / f"p{i}", seed=i) for i in range(2)]
    (dst / "sources.yaml").write_text(yaml.safe_dump(sources, default_flow_style=True))


SUBSTITUTIONS = {
    "ct.nii.gz": ("the bundled example CT (TotalSegmentator, 3 mm)", _copy(EXAMPLE_CT)),
    "seg.nii.gz": ("the bundled example's TotalSegmentator labels", _copy(EXAMPLE_LABELS)),
    "dicom_series/": ("the TotalSegmentator DICOM example series (real data)",
                      _link_real("totalsegmentator_example", "example_ct_dicom")),
    "dicom_seg.nii.gz": ("its TotalSegmentator labels (real data)",
                         _link_real("totalsegmentator_example", "example_seg_dicom.nii.gz")),
    "Task03_Liver/": ("a decathlon folder holding the bundled example (liver = 1)", _example_decathlon),
    "cases.csv": ("a ct,labels,case_id CSV: the bundled example as cases a and b", _cases_csv),
    "labelsTs/": ("two reference masks drawn by the test (a 14 mm and a 6 mm ball each)", _masks(0)),
    "real_only/": ("predictions: the 14 mm ball shifted by 3 voxels, the 6 mm one missed", _masks(3, drop=True)),
    "real_plus_synthetic/": ("predictions: both balls, the large one shifted by 1 voxel", _masks(1)),
    "realism:Task03_Liver/": ("a decathlon folder: two bundled-example scans with rules tumours (label 2)",
                              _lesions_decathlon),
    "real_lesions.csv": ("a lesion CSV (ct, lesion = label map): the same scans", _lesion_csv),
    "runs/liver_rules/": ("tumorsyn generate on the bundled example, rules", _generated()),
    "runs/rules/": ("tumorsyn generate on the bundled example, rules", _generated()),
    "runs/ca/": ("tumorsyn generate on the bundled example, --method ca", _generated("--method", "ca")),
    "diffusion_sources/": ("two phantom CTs with rules tumours (the diffusion tests' phantoms)", _tiny_diffusion_sources),
}

# Names a Python fragment takes from the round trip of docs/usage.md (bundled example, liver).
ROUND_TRIP = """
import numpy as np, tumorsyn
from tumorsyn.io import load_scan, load_label_map, organ_mask_from_labels
scan = load_scan("ct.nii.gz")
ct = ct_hu = scan.values()
spacing = spacing_mm = scan.spacing_mm
organ = organ_mask = organ_mask_from_labels(load_label_map("seg.nii.gz", like=scan), "liver")
"""
EVALUATE_PRELUDE = """
import numpy as np
idx = np.indices((48, 48, 32))
reference = sum((idx[a] - c) ** 2 for a, c in enumerate((20, 24, 16))) <= 36
prediction = sum((idx[a] - c) ** 2 for a, c in enumerate((21, 24, 16))) <= 36
"""
REALISM_PRELUDE = ROUND_TRIP + """
spec = tumorsyn.sample_spec(organ_mask, spacing_mm, organ="liver", size_mm=(10, 20), ct_hu=ct, rng=1)
ct_hu, tumour_mask = tumorsyn.synthesize(ct, organ_mask, spacing_mm, spec)
lesion_mask = tumour_mask.astype(bool)
real_rows = []
for seed in range(4):
    s = tumorsyn.sample_spec(organ_mask, spacing_mm, organ="liver", size_mm=(10, 20), ct_hu=ct, rng=seed + 10)
    img, lab = tumorsyn.synthesize(ct, organ_mask, spacing_mm, s)
    from tumorsyn.metrics.realism import describe_case as _describe
    real_rows += _describe(img, lab, organ_mask, spacing_mm, organ="liver")
synthetic_rows = list(real_rows)
"""
DIFFUSION_TRAIN = ("tumorsyn train-diffusion configs/diffusion/tiny_cpu.yaml --out runs/tiny",
                   f"{BIN}/tumorsyn train-diffusion {REPO}/configs/diffusion/tiny_test.yaml --out runs/tiny "
                   "--set \"data.tumor_sources=$(cat diffusion_sources/sources.yaml)\"")

SYNOPSIS = "a synopsis ([options], alternatives); tests/test_docs_synopses.py checks it against --help"

FATES: dict[tuple[str, str], Fate] = {
    # README.md
    ("README.md", "make demo   # sets up .venv, writes a liver tumour into the bundled example CT -> demo_out/"): Fate(
        "substituted", "`make demo` = the Makefile's demo recipe, run here with the venv under test (the install "
        "step is what built that venv); `make test` is not run: it is the suite that runs this test",
        replace=(("make demo", "MAKE_DEMO"), ("make test", "true"))),
    # docs/usage.md
    ("docs/usage.md", "tumorsyn generate CT --labels LABELS --organ liver|pancreas|kidney|spleen --out DIR "
                      "[--method rules|ca|diffusion]"): Fate("not run", SYNOPSIS),
    ("docs/usage.md", "tumorsyn generate --example --organ liver --out demo --preview"): Fate(
        "run", stage=("ct.nii.gz", "seg.nii.gz", "dicom_series/", "dicom_seg.nii.gz", "Task03_Liver/", "cases.csv")),
    ("docs/usage.md", "import numpy as np, tumorsyn"): Fate("run", stage=("ct.nii.gz", "seg.nii.gz")),
    ("docs/usage.md", "from tumorsyn.transforms import RandTumorSynthesisd"): Fate("run"),
    # docs/ca.md
    ("docs/ca.md", "import tumorsyn"): Fate(
        "substituted", "a fragment: ct, organ, spacing from the round trip of docs/usage.md (bundled example)",
        stage=("ct.nii.gz", "seg.nii.gz"), prelude=ROUND_TRIP),
    ("docs/ca.md", "from tumorsyn.generators.ca import grow_trajectory"): Fate(
        "substituted", "a fragment: ct, organ, spacing as above, spec from the first example of docs/ca.md",
        stage=("ct.nii.gz", "seg.nii.gz"), prelude=ROUND_TRIP + "PREVIOUS_BLOCK"),
    # docs/diffusion.md
    ("docs/diffusion.md", "tumorsyn train-diffusion CONFIG.yaml [--set key=value ...] [--out RUN_DIR] [--seed N] "
                          "[--stage all|autoencoder|refiner|ldm]"): Fate("not run", SYNOPSIS),
    ("docs/diffusion.md", "config.yaml, versions.json           the resolved config; library versions and device"):
        Fate("not run", "a listing of the run folder's files"),
    ("docs/diffusion.md", "tumorsyn train-diffusion CONFIG.yaml --evaluate [--model DIR] [--samples 4] [--steps N] "
                          "[--grain model|noise|host]"): Fate("not run", SYNOPSIS),
    ("docs/diffusion.md", "config.json              format \"tumorsyn-diffusion\" (version 1); organs; autoencoder "
                          "and unet:"): Fate("not run", "a listing of the model folder's files"),
    ("docs/diffusion.md", DIFFUSION_TRAIN[0]): Fate(
        "substituted", "tiny_cpu.yaml trains for minutes on 3D-IRCADb: the tests' smallest documented config "
        "(tiny_test.yaml, 3 + 3 steps) on two phantom scans stands in; the sampling commands then run as written "
        "on the model it writes", stage=("diffusion_sources/", "ct.nii.gz", "seg.nii.gz"),
        replace=(DIFFUSION_TRAIN, ("--model DIR", "--model runs/tiny/model")), timeout=420,
        slow="trains a diffusion model (3 + 3 steps) and samples 3 tumours: 1-3 minutes on 2 shared cores"),
    ("docs/diffusion.md", "spec = tumorsyn.sample_spec(organ, spacing, organ=\"liver\", method=\"diffusion\", "
                          "size_mm=(10, 20),"): Fate(
        "substituted", "a fragment: ct, organ, spacing from the round trip of docs/usage.md; the model the "
        "previous block trained", prelude=ROUND_TRIP + "from tumorsyn.transforms import RandTumorSynthesisd\n",
        before=(("docs/diffusion.md", DIFFUSION_TRAIN[0]),), timeout=420,
        slow="needs the model of the block above (trained here unless that block ran first in this session)"),
    # docs/evaluate.md
    ("docs/evaluate.md", "tumorsyn evaluate --pred DIR_OR_CSV --ref DIR_OR_CSV --out REPORT_DIR"): Fate(
        "not run", "a synopsis; tests/tumorsyn/test_cli_evaluate.py checks it names every option of --help"),
    ("docs/evaluate.md", "tumorsyn evaluate --pred real_only/ --ref labelsTs/ --out rep_real/"): Fate(
        "run", stage=("labelsTs/", "real_only/", "real_plus_synthetic/")),
    ("docs/evaluate.md", "import numpy as np"): Fate(
        "substituted", "a fragment: reference and prediction are two 6-voxel balls drawn by the test",
        prelude=EVALUATE_PRELUDE),
    # docs/extending.md
    ("docs/extending.md", "import numpy as np"): Fate("run"),
    ("docs/extending.md", "[project.entry-points.\"tumorsyn.generators\"]"): Fate(
        "not run", "a pyproject.toml fragment; test_entry_point_group_is_the_one_read checks its group name"),
    ("docs/extending.md", "from tumorsyn.io.cases import Case, case_ids"): Fate("run"),
    ("docs/extending.md", "CaseMetric(name=\"hd95_mm\", column=\"HD95 (mm)\","): Fate(
        "substituted", "a fragment: CaseMetric imported and my_hd95 defined (the user's own metric)",
        prelude="from tumorsyn.metrics.case_metrics import CaseMetric\nmy_hd95 = lambda ref, pred, spacing_mm: 0.0\n"),
    # docs/reader_study.md (R1/R2's page): the quick commands without a browser
    ("docs/reader_study.md", "# 1. Synthetic cases: any `tumorsyn generate` output folder (its manifest.jsonl lists "
                             "CT + tumour mask)."): Fate(
        "not run", "between build and analyze, readers rate in a browser (`analyze` refuses a study without "
        "ratings: 'no ratings yet; nothing to analyse'); the steps are tested in tests/reader_study, the page in "
        "Chromium. Tried as written without serve: generate, build and add-reader ran (50 CPU-s)"),
    ("docs/reader_study.md", "from reader_study import build_study, add_reader, create_app, analyze_study"): Fate(
        "not run", "the Python twin of the shell block above (same study, same files); its functions are tested "
        "in tests/reader_study"),
    ("docs/reader_study.md", "study/study.json            design, seed, render and display settings, items: "
                             "opaque id, panels, slice"):
        Fate("not run", "a listing of the study folder's files"),
    # docs/realism.md
    ("docs/realism.md", "tumorsyn realism --real Task03_Liver/ --synthetic runs/liver_rules/ --organ liver "
                        "--out realism_rules/"): Fate(
        "run", stage=("realism:Task03_Liver/", "runs/liver_rules/", "real_lesions.csv", "runs/rules/", "runs/ca/"),
        timeout=240),
    ("docs/realism.md", "from tumorsyn.metrics.realism import describe_case, lesion_descriptors"): Fate(
        "substituted", "a fragment: ct_hu, lesion_mask, tumour_mask, organ_mask from the round trip of "
        "docs/usage.md; real_rows and synthetic_rows described from rules tumours",
        stage=("ct.nii.gz", "seg.nii.gz"), prelude=REALISM_PRELUDE),
    # docs/nnunet.md
    ("docs/nnunet.md", 'pip install "tumorsyn[nnunet]"          # nnunetv2 (tested with 2.8.1)'): Fate(
        "not run", "installs packages (make test installs the nnunet extra)"),
    ("docs/nnunet.md", "tumorsyn generate --dataset Task03_Liver/ --organ liver --out-layout nnunet --dataset-id 501 "
                       "\\"): Fate("run", stage=("Task03_Liver/",)),
    ("docs/nnunet.md", "nnUNetv2_plan_and_preprocess -d 501 --verify_dataset_integrity"): Fate(
        "not run", "needs $nnUNet_raw set up; tests/synthesize/test_out_layout_nnunet.py runs the same check "
                   "(verify_dataset_integrity) on a dataset made from the bundled example"),
    ("docs/nnunet.md", "tumorsyn nnunet install-trainer                       # once per nnunetv2 installation"): Fate(
        "not run", "writes into site-packages and trains: tests/integrations/test_nnunet_install.py and "
                   "test_nnunet_trainer.py run these steps (temporary trainer folder, tiny dataset, 2 iterations)"),
    ("docs/nnunet.md", "tumorsyn nnunet install-trainer [--target DIR]        # installed: "
                       ".../nnunetv2/training/nnUNetTrainer/nnUNetTrainerTumorSyn.py"): Fate("not run", SYNOPSIS),
    ("docs/nnunet.md", "tumorsyn nnunet configure (-d ID_OR_NAME | --dataset ID_OR_NAME | --out FILE) --organ ORGAN "
                       "[--prob P]"): Fate("not run", SYNOPSIS),
    ("docs/nnunet.md", "{"): Fate("not run", "a settings file as `tumorsyn nnunet configure` writes it "
                                             "(tests/integrations/test_nnunet_trainer.py reads such files)"),
    # docs/torchio.md
    ("docs/torchio.md", "import torch"): Fate("run", stage=("ct.nii.gz", "seg.nii.gz")),
    # docs/segment.md
    ("docs/segment.md", "tumorsyn segment train CONFIG.yaml [--set key=value ...] [--out DIR] [--seed S] [--quiet] "
                        "[--no-resume]"): Fate("not run", SYNOPSIS),
    # docs/experiment.md
    ("docs/experiment.md", "tumorsyn segment experiment configs/segment/real_small_tumours_cpu.yaml --out "
                           "~/real_small_tumours"): Fate(
        "not run", "the pre-registered CPU experiment takes 1-2 hours; tests/segment/test_fold_experiment.py runs the "
                   "same config with 3 steps and one seed (test_real_small_tumours_ci_version_runs_the_design)"),
    ("docs/experiment.md", "accelerate launch -m tumorsyn segment experiment "
                           "configs/segment/experiment_msd_task03_liver.yaml \\"): Fate(
        "not run", "needs the user's dataset and GPUs; tests/segment/test_fold_experiment.py runs this config on a "
                   "tiny stand-in dataset (test_gpu_liver_config_runs_end_to_end_on_a_stand_in_dataset)"),
    ("docs/segment.md", "tumorsyn segment experiment configs/segment/demo_cpu.yaml --out ~/segment_demo"): Fate(
        "not run", "the CPU demo (1.5 min alone on 2 cores, 8-9 min beside other busy processes): tests/segment/test_demo.py runs this command "
        "(test_demo_command_is_the_documented_one checks that it is the same)"),
}


def _block(key: tuple[str, str]) -> Block:
    return next(b for b in doc_blocks() if b.key == key)


def _tumorsyn(*args: str, cwd: Path | None = None) -> None:
    subprocess.run([str(BIN / "tumorsyn"), *args], cwd=cwd, check=True, capture_output=True, text=True)


def _make_demo() -> str:
    """The recipe of the Makefile's ``demo`` target, with the venv's tumorsyn (the ``install`` prerequisite is
    the venv under test)."""
    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", text, re.M).group(1)
    lines = [line.strip().lstrip("@") for line in recipe.splitlines()]
    return "\n".join(line.replace("$(BIN)/", f"{BIN}/") for line in lines)


def _stage(folder: Path, names: tuple[str, ...]) -> None:
    for name in names:
        target = folder / name.split(":", 1)[-1].rstrip("/")
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        SUBSTITUTIONS[name][1](target)


_RAN: dict[tuple[str, str], Path] = {}  # block -> the folder it ran in (this session)


def _run(block: Block, fate: Fate, folder: Path) -> None:
    for key in fate.before:
        if key in _RAN:  # reuse what it wrote (e.g. a trained model) instead of running it again
            for entry in _RAN[key].iterdir():
                if not (folder / entry.name).exists():
                    (folder / entry.name).symlink_to(entry)
        else:
            _run(_block(key), FATES[key], folder)
    _stage(folder, fate.stage)
    text = block.text
    for old, new in fate.replace:
        assert old in text, f"{block.doc}:{block.line}: the substitution {old!r} no longer matches the block"
        text = text.replace(old, _make_demo() if new == "MAKE_DEMO" else new)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(REPO),
           "MPLBACKEND": "Agg"}
    if block.lang == "python":
        prelude = fate.prelude
        if "PREVIOUS_BLOCK" in prelude:
            blocks = [b for b in doc_blocks() if b.doc == block.doc and b.lang == "python"]
            prelude = prelude.replace("PREVIOUS_BLOCK", blocks[blocks.index(block) - 1].text)
        command = [sys.executable, "-c", prelude + "\n" + text]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", text]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=fate.timeout)
    assert done.returncode == 0, (f"{block.doc}:{block.line} fails as written (exit {done.returncode}):\n"
                                  f"{done.stderr[-3000:]}")
    _RAN[block.key] = folder


def test_every_block_has_a_fate():
    keys = [b.key for b in doc_blocks()]
    missing = [f"{doc}: {first!r}" for doc, first in keys if (doc, first) not in FATES]
    assert not missing, "blocks without a fate in tests/test_docs_examples.py FATES:\n" + "\n".join(missing)
    stale = [f"{doc}: {first!r}" for doc, first in FATES if (doc, first) not in keys]
    assert not stale, "FATES entries whose block is gone from the docs:\n" + "\n".join(stale)
    for key, fate in FATES.items():
        assert fate.kind in ("run", "substituted", "not run"), key
        assert fate.kind == "run" or fate.reason, f"{key}: a substituted or skipped block says why"
        assert all(name in SUBSTITUTIONS for name in fate.stage), key


def test_the_fates_are_a_table_people_can_read():
    """The list every review asks for: each block, and what this test does with it."""
    rows = [f"{b.doc}:{b.line} [{FATES[b.key].kind}] {b.key[1][:70]}"
            + (f" -- {FATES[b.key].reason}" if FATES[b.key].reason else "") for b in doc_blocks() if b.key in FATES]
    assert len(rows) == len(FATES)
    print("\n".join(rows))


RUNNABLE = [pytest.param(key, id=f"{key[0]}:{key[1][:40]}", marks=[pytest.mark.slow] if fate.slow else [])
            for key, fate in FATES.items() if fate.kind != "not run"]


@pytest.mark.parametrize("key", RUNNABLE)
def test_example_runs_as_written(key, tmp_path):
    block = _block(key)
    _run(block, FATES[key], tmp_path)


def test_substitutions_are_used():
    used = {name for fate in FATES.values() for name in fate.stage}
    assert used == set(SUBSTITUTIONS), sorted(set(SUBSTITUTIONS) - used)


def test_entry_point_group_is_the_one_read():
    from tumorsyn.generators import registry

    fragment = _block(("docs/extending.md", "[project.entry-points.\"tumorsyn.generators\"]")).text
    group = re.search(r'entry-points\."([^"]+)"', fragment).group(1)
    assert group in Path(registry.__file__).read_text()


def test_demo_command_is_the_documented_one():
    """The segment CPU demo's documented command is the one tests/segment/test_demo.py runs."""
    block = _block(("docs/segment.md", "tumorsyn segment experiment configs/segment/demo_cpu.yaml --out ~/segment_demo"))
    args = block.text.split()[1:]
    source = (REPO / "tests" / "segment" / "test_demo.py").read_text()
    assert '"segment", "experiment", str(DEMO), "--out"' in source and args[:3] == ["segment", "experiment",
                                                                                   "configs/segment/demo_cpu.yaml"]
    assert args[3] == "--out"
