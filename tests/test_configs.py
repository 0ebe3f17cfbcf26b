"""Every config file under conf/ composes, and what it describes instantiates on the CPU: a broken config file fails
CI, not a user's run."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from conftest import CONF, ROOT, compose_config
from yolo9000.build import BuildInfo, instantiate_list, instantiate_module, resolved_model_config

# options that need inputs a user passes (their values are checked, not their files)
EXTRA = {
    "experiment=ablation_hires_classifier": ["+ckpt_224=a.ckpt", "+ckpt_448=b.ckpt"],
    "classifier=224px": ["+ckpt_224=a.ckpt"],
    "classifier=448px": ["+ckpt_448=b.ckpt"],
    "model=darknet": [f"model.net.cfg={ROOT / 'data' / 'darknet' / 'cfg' / 'yolov2-tiny-voc.cfg'}"],
}
GPU_TRAINERS = {"gpu", "ddp"}  # need CUDA to instantiate; composed only


def _options(group: str) -> list[str]:
    """The selectable options of a config group (files starting with ``_`` are shared blocks, not options)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


def _all_group_files() -> list[tuple[str, str]]:
    out = []
    for path in sorted(CONF.rglob("*.yaml")):
        rel = path.relative_to(CONF)
        if len(rel.parts) > 1 and not path.stem.startswith("_"):
            out.append(("/".join(rel.parts[:-1]), path.stem))
    return out


def _fake_info(cfg: DictConfig) -> BuildInfo:
    """What the build would compute, without data: 3 classes and the priors when they are a list (else 5 unit
    priors, the k-means / hand-picked stand-in)."""
    spec = cfg.model.get("priors")
    names = ["a", "b", "c"]
    tree = OmegaConf.select(cfg, "model.loss.tree") or OmegaConf.select(cfg, "model.tree")
    if tree is not None:  # a hierarchical head predicts the tree's nodes
        names = list(instantiate(tree).names)  # its node names, in tree order (as TreeLabels gives them)
    if spec is None:
        return BuildInfo(names, int(cfg.data.img_size))
    anchors = spec.get("anchors")
    if isinstance(anchors, str):
        anchors = [[1.0, 1.0]] * (9 if anchors == "handpicked" else int(spec.k))
    elif anchors is not None:
        anchors = OmegaConf.to_container(anchors)
    grid = int(cfg.data.img_size) // 32 if cfg.model.net.get("head") == "fc" else None  # as the build: fc heads only
    return BuildInfo(names, int(cfg.data.img_size), anchors, None, "test", grid)


def _instantiate_model(cfg: DictConfig) -> torch.nn.Module:
    """The configured module at a small width (the architecture is what is checked), one forward pass."""
    model = resolved_model_config(cfg.model, _fake_info(cfg))
    if "backbone" in model["net"]:  # a darknet cfg's network is as the cfg writes it
        model["net"]["backbone"]["width"] = 0.125
    for key in ("backbone_ckpt", "init_ckpt"):  # checkpoints a user passes
        if key in model:
            model[key] = None
    module = instantiate_module(model)
    size = int(cfg.data.img_size)
    with torch.no_grad():
        out = module.eval()(torch.rand(1, 3, size, size))
    assert out.shape[0] == 1
    return module


def test_every_config_file_is_covered() -> None:
    """The list below is built from the files: a new config group appears here and in the tests at once."""
    groups = {g for g, _ in _all_group_files()}
    assert {"data", "model", "trainer", "logger", "callbacks", "experiment", "variant", "priors"} <= groups


@pytest.mark.parametrize("name", sorted(p.stem for p in CONF.glob("*.yaml")))
def test_primary_configs_compose(name: str) -> None:
    cfg = compose_config(name, hydra_config=True)
    assert cfg.task_name and cfg.paths.root_dir == "."
    assert cfg.hydra.run.dir  # the run folder resolves (resume=null -> a new timestamped folder)


@pytest.mark.parametrize(("group", "option"), _all_group_files(), ids=lambda x: str(x))
def test_group_option_composes_and_instantiates(group: str, option: str, tmp_path: Path) -> None:
    override = f"{group}={option}"
    hydra_cfg = group.startswith("hydra") or group == "logger"
    cfg = compose_config("train", override, *EXTRA.get(override, []), hydra_config=hydra_cfg)
    if group == "hydra":  # run / sweep folders and the job log
        assert cfg.hydra.run.dir and cfg.hydra.sweep.dir and "task_name" in str(cfg.hydra.job_logging.handlers.file)
        return
    if group.startswith("hydra/"):  # launchers: the plugin's config node composes with our keys
        node = OmegaConf.select(cfg, group.replace("/", "."))
        assert node is not None and node._target_
        return
    if group == "data":
        dm = instantiate(cfg.data)  # parsers are built lazily: no data needed
        assert dm.batch_size > 0 and dm.num_workers >= 0
        return
    if group == "trainer":
        if option in GPU_TRAINERS and not torch.cuda.is_available():
            assert cfg.trainer.accelerator in ("gpu", "cuda", "auto")
            return
        trainer = instantiate(cfg.trainer, default_root_dir=str(tmp_path), logger=False, enable_checkpointing=False)
        assert trainer.max_epochs == cfg.trainer.max_epochs
        return
    if group in ("logger", "callbacks"):
        from hydra.core.hydra_config import HydraConfig

        if hydra_cfg:  # the W&B logger reads the sweep folder and the overrides from Hydra's config
            HydraConfig.instance().set_config(cfg)
        try:
            with_dirs = OmegaConf.merge(cfg, {"paths": {"output_dir": str(tmp_path)}})
            objs = instantiate_list(with_dirs.get(group))
        finally:
            HydraConfig.instance().cfg = None  # no Hydra app runs: later tests must not see this one's config
        assert objs, f"{override} instantiates nothing"
        return
    if group == "paths":
        assert cfg.paths.log_dir
        return
    _instantiate_model(cfg)  # model, experiment, variant, priors, classifier


@pytest.mark.parametrize(
    "override",
    [f"priors={p.stem}" for p in sorted((CONF / "priors").glob("*.yaml"))]
    + [f"variant={p.stem}" for p in sorted((CONF / "variant").glob("*.yaml"))],
)
def test_every_priors_option_and_table2_column_builds(override: str, caplog: pytest.LogCaptureFixture) -> None:
    """Each Table 1 row (``priors=...``) and Table 2 column (``variant=...``) builds on the data (composing is not
    enough: the priors' log line once failed on the heads without priors, ``priors=none`` and the fc columns, and
    those sweep jobs crashed); the line names the priors the run uses, ``none`` for those heads."""
    from yolo9000.build import build

    cfg = compose_config("train", override, "data.max_images=4", "data.num_workers=0", "model.net.backbone.width=0.125")
    with caplog.at_level(logging.INFO, "yolo9000"):
        built = build(cfg)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("priors (")]
    if built.info.anchors is None:
        assert lines and ": none;" in lines[0]
    else:
        assert len(built.info.anchors) == built.module.model.anchors.shape[0]


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_experiment_sweep_values_compose(experiment: str) -> None:
    """Every job of an experiment's sweep composes (its hydra.sweeper.params, one value at a time)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    base = [f"experiment={experiment}", *EXTRA.get(f"experiment={experiment}", [])]
    cfg = compose_config("train", *base, hydra_config=True)
    params = cfg.hydra.sweeper.get("params") or {}
    parser = OverridesParser.create()
    for key, values in params.items():
        for o in parser.parse_overrides([f"{key}={values}"]):
            for v in o.sweep_string_iterator():
                job = compose_config("train", *base, f"{key}={v}")
                _instantiate_model(job)


@pytest.mark.parametrize(
    ("data", "headline"), [("bccd", "map_50"), ("voc", "voc07_map_50"), ("coco", "map"), ("coco9k", "map")]
)
def test_headline_metric_follows_the_data(data: str, headline: str) -> None:
    """VOC's runs are picked and reported by the paper's VOC2007 11-point AP, COCO's by COCO AP; no decode cap."""
    cfg = compose_config("train", f"data={data}")
    assert cfg.model.headline_metric == headline
    assert cfg.callbacks.model_checkpoint.monitor == f"val/{headline}"
    assert cfg.model.max_det is None and cfg.model.voc07 is True


@pytest.mark.parametrize(
    ("overrides", "want"),
    [
        ((), ("crop", "constant", False)),  # the embedded default: its results predate HEAD's placement
        (("fidelity=paper_era",), ("crop", "replicate", False)),
        (("data=digits",), ("crop", "constant", False)),
        (("data=voc",), ("place", "constant", True)),  # darknet HEAD: placement, letterbox evaluation
        (("data=voc", "fidelity=paper_era"), ("crop", "replicate", False)),
        (("data=coco", "data.augment.jitter_mode=crop"), ("crop", "constant", True)),  # each key stays its own
    ],
)
def test_the_fidelity_sets_the_augmentation_geometry_and_the_eval_resize(overrides: tuple, want: tuple) -> None:
    """``fidelity=darknet_head`` (the default): darknet HEAD's ``load_data_detection`` placement and letterboxed
    evaluation; ``paper_era``: the jittered crop (edge pixels beyond the image) and the stretch; the embedded BCCD
    and digits data keep the crop and the stretch their recorded results were made with. The bench composes the
    same."""
    for config in ("train", "bench"):
        a = compose_config(config, *overrides).data.augment
        assert (a.jitter_mode, a.jitter_border, a.letterbox) == want, config


def test_runs_started_in_the_same_second_get_their_own_folders() -> None:
    """Two processes that resolve the same timestamp (``${now:}`` pinned here) still get different run and sweep
    folders (two sweeps launched together once shared one folder and overwrote each other's jobs); within one
    process the folder is resolved once, as the timestamp is."""
    code = (
        "import os, sys; sys.path.insert(0, 'tests');"
        "from omegaconf import OmegaConf; from conftest import compose_config;"
        "cfg = compose_config('train', hydra_config=True);"
        "OmegaConf.register_new_resolver('now', lambda pattern: 'T', replace=True);"
        "h = cfg.hydra; print(h.run.dir, h.sweep.dir, h.run.dir, os.getpid())"
    )
    runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), [r.stderr[-2000:] for r in runs]
    outs = [r.stdout.split() for r in runs]
    for run_dir, sweep_dir, again, pid in outs:
        assert run_dir.endswith(f"/train/T_{pid}") and sweep_dir.endswith(f"/default/T_{pid}") and again == run_dir
    assert outs[0][0] != outs[1][0] and outs[0][1] != outs[1][1]


def test_hydra_options_may_stand_among_the_overrides() -> None:
    """Hydra's parser takes the overrides as one run of words: an override after ``-m`` (the README's
    ``experiment=x -m`` with ``seed=1,2`` appended) stopped with "unrecognized arguments". The entry scripts move
    Hydra's options (with their values) before the overrides, keeping the overrides' order."""
    from yolo9000.environment import hydra_flags_first

    argv = ["train.py", "experiment=ablation_anchors", "-m", "seed=1,2"]
    assert hydra_flags_first(argv) == ["train.py", "-m", "experiment=ablation_anchors", "seed=1,2"]
    argv = ["bench.py", "a=1", "--config-name", "bench_gpu_full", "b=2", "--cfg", "job", "-p", "data", "c=3"]
    assert hydra_flags_first(argv) == [
        *["bench.py", "--config-name", "bench_gpu_full", "--cfg", "job", "-p", "data"],
        *["a=1", "b=2", "c=3"],
    ]
    assert hydra_flags_first(["t.py", "x=1", "--info", "y=2"]) == ["t.py", "--info", "x=1", "y=2"]  # optional value
    assert hydra_flags_first(["t.py", "x=1", "-i", "defaults", "y=2"]) == ["t.py", "-i", "defaults", "x=1", "y=2"]
    assert hydra_flags_first(["t.py", "--config-name=b", "~x", "+y=-1"]) == ["t.py", "--config-name=b", "~x", "+y=-1"]
    res = subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), "seed=7", "--cfg", "job", "data.batch_size=3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    printed = OmegaConf.create(res.stdout)
    assert (printed.seed, printed.data.batch_size) == (7, 3)


def test_a_dataset_not_found_names_the_unset_env_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """conf/data/coco.yaml's root is ${oc.env:COCO_ROOT,${paths.data_dir}/coco}: without .env the error named the
    path only, never COCO_ROOT (the README's fix). The hint names each unset variable and the default used, resolved
    (the project's data folder, not a path relative to where the command runs); a set variable or another error
    type adds nothing."""
    from yolo9000.environment import hint_unset_env

    monkeypatch.delenv("COCO_ROOT", raising=False)
    cfg = compose_config("train", "data=coco")
    data = cfg.data
    with pytest.raises(FileNotFoundError) as err, hint_unset_env(data):
        raise FileNotFoundError("COCO train JSON not found: data/coco/annotations/x.json")
    assert str(err.value) == (
        f"COCO train JSON not found: data/coco/annotations/x.json (COCO_ROOT is not set, so data.root fell back to "
        f"{cfg.paths.data_dir}/coco: set it in .env or the environment, or give data.root=...)"
    )
    monkeypatch.setenv("COCO_ROOT", str(tmp_path))  # set, to a folder that exists
    with pytest.raises(FileNotFoundError, match=r"^missing$"), hint_unset_env(data):
        raise FileNotFoundError("missing")
    monkeypatch.delenv("COCO_ROOT")
    with pytest.raises(ValueError, match=r"^bad$"), hint_unset_env(data):
        raise ValueError("bad")


def test_a_dataset_not_found_names_the_env_variable_set_to_a_missing_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """VOC_ROOT set in .env to a path that does not exist (a typo, an unmounted disk): the error named only the
    folders looked for under <root>/VOC2007 and told to set data.ann_dir, never VOC_ROOT nor that the root itself
    is missing."""
    from yolo9000.environment import hint_unset_env

    missing = tmp_path / "no_such_VOCdevkit"
    monkeypatch.setenv("VOC_ROOT", str(missing))
    data = compose_config("train", "data=voc").data
    with pytest.raises(FileNotFoundError) as err, hint_unset_env(data):
        raise FileNotFoundError(f"VOC annotation (XML) folder not found: looked for {missing}/VOC2007/Annotations")
    assert str(err.value).endswith(
        f"(VOC_ROOT={missing} (.env or the environment) does not exist: correct it, or give data.root=...)"
    )
    # an error about another path (the variable's folder exists or is not the one named) adds nothing
    monkeypatch.setenv("VOC_ROOT", str(tmp_path))
    data = compose_config("train", "data=voc").data
    with pytest.raises(FileNotFoundError, match=r"^missing$"), hint_unset_env(data):
        raise FileNotFoundError("missing")


def test_the_env_hint_leaves_out_optional_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """experiment=yolo9000 with IMAGENET9K_LIST pointing nowhere: the error blamed the optional IMAGENET9K_ROOT
    ("is not set, so data.classification.root fell back to null: set it in .env"), whose absence is never why a
    file is missing; the variable that is wrong is named alone."""
    from yolo9000.environment import hint_unset_env

    monkeypatch.delenv("IMAGENET9K_ROOT", raising=False)
    monkeypatch.setenv("COCO_ROOT", str(tmp_path))
    missing = tmp_path / "no.list"
    monkeypatch.setenv("IMAGENET9K_LIST", str(missing))
    data = compose_config("train", "experiment=yolo9000").data
    with pytest.raises(FileNotFoundError) as err, hint_unset_env(data):
        raise FileNotFoundError(f"classification list not found: {missing}")
    assert str(err.value) == (
        f"classification list not found: {missing} (IMAGENET9K_LIST={missing} (.env or the environment) does not "
        "exist: correct it, or give data.classification.list_file=...)"
    )
    monkeypatch.delenv("IMAGENET9K_LIST")  # unset: its default is named, the optional root still not
    data = compose_config("train", "experiment=yolo9000").data
    with pytest.raises(FileNotFoundError) as err, hint_unset_env(data):
        raise FileNotFoundError("classification list not found: data/imagenet9k.train.list")
    assert "IMAGENET9K_LIST is not set" in str(err.value)
    assert "IMAGENET9K_ROOT" not in str(err.value)


def test_a_leading_tilde_in_a_dataset_variable_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """python-dotenv keeps `VOC_ROOT=~/datasets/VOCdevkit` as it is written: the parsers looked for a folder named
    `~` in the working directory. The path variables (*_ROOT, *_LIST) get their `~` expanded; others are left."""
    from yolo9000.environment import expand_home_in_path_vars

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("VOC_ROOT", "~/datasets/VOCdevkit")
    monkeypatch.setenv("IMAGENET9K_LIST", "~/9k.train.list")
    monkeypatch.setenv("SOME_OTHER_VAR", "~/keep")
    changed = expand_home_in_path_vars()
    assert os.environ["VOC_ROOT"] == f"{tmp_path}/datasets/VOCdevkit"
    assert os.environ["IMAGENET9K_LIST"] == f"{tmp_path}/9k.train.list"
    assert os.environ["SOME_OTHER_VAR"] == "~/keep"
    assert {"VOC_ROOT", "IMAGENET9K_LIST"} <= set(changed)


def test_the_env_hint_names_a_default_that_holds_an_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    """conf/data/imagenet.yaml's root is ${oc.env:IMAGENET_ROOT,${paths.data_dir}/imagenet}: the hint cut the default
    at its first closing brace ("fell back to ${paths.data_dir: set it ..."); it now names the path it resolves to."""
    from yolo9000.environment import hint_unset_env, unset_env_defaults

    monkeypatch.delenv("IMAGENET_ROOT", raising=False)
    cfg = compose_config("train", "data=imagenet", "model=darknet19_cls_cpu")
    data = cfg.data
    assert ("root", "IMAGENET_ROOT", "${paths.data_dir}/imagenet") in unset_env_defaults(data)
    with pytest.raises(FileNotFoundError) as err, hint_unset_env(data):
        raise FileNotFoundError("no folder data/imagenet/train")
    assert str(err.value) == (
        "no folder data/imagenet/train (IMAGENET_ROOT is not set, so data.root fell back to "
        f"{cfg.paths.data_dir}/imagenet: set it in .env or the environment, or give data.root=...)"
    )


def test_torch_threads_fit_the_cpus_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SLURM task of 1 CPU on a machine where torch counts 2 cores runs 1 thread; a user's OMP_NUM_THREADS
    stands; a task given more CPUs than torch uses changes nothing."""
    import torch

    from yolo9000.environment import fit_torch_threads

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    try:
        torch.set_num_threads(2)  # what torch counts on a 2-core machine, whatever the process was given
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert fit_torch_threads() is None and torch.get_num_threads() == 2  # the user's setting
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert fit_torch_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "64")
        assert fit_torch_threads() is None and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("env", "suffix"),
    [({}, ""), ({"LOCAL_RANK": "1"}, "_rank1"), ({"SLURM_PROCID": "0"}, ""), ({"SLURM_PROCID": "3"}, "_rank3")]
    + [({"RANK": "2", "SLURM_PROCID": "0", "LOCAL_RANK": "0"}, "_rank2")],
)
def test_ranks_above_zero_log_to_their_own_file(
    env: dict[str, str], suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job log of a distributed run's rank r > 0 is <task>_rank<r>.log (global rank: torchrun's RANK, SLURM's
    SLURM_PROCID, else Lightning's LOCAL_RANK on one node)."""
    from yolo9000.multirun import rank_suffix

    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert rank_suffix() == suffix
