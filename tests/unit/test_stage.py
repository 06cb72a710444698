"""`evalwatt stage`: what offline compute nodes need, checked and (with --download) fetched
into the configured caches, the manifest, and the runtime's check that fails a job at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from evalwatt.base.layout import Layout
from evalwatt.config.load import from_dict
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.staging import StageManifest
from evalwatt.jobs.resolve import resolve_job
from evalwatt.ops.cli import main
from evalwatt.ops.staging import ItemState, load_task_online, needs, stage
from evalwatt.plan.matrix import plan_run
from evalwatt.runtime.offline import NotStagedError, require_staged

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def study(small_config, tmp_path):
    """The small config: vLLM models under model_root, inspect_evals tasks, HF caches."""
    small_config["results_dir"] = str(tmp_path / "results")
    small_config["model_root"] = str(tmp_path / "models")
    small_config["job"]["env"] = {
        "HF_HOME": str(tmp_path / "hf"),
        "INSPECT_EVALS_CACHE_DIR": str(tmp_path / "ie"),
        "VLLM_NO_USAGE_STATS": "1",
    }
    config = from_dict(small_config, tmp_path)
    return config, plan_run(config)


def _fake_download(calls):
    def download(hf_id: str, target: str) -> None:
        calls.append((hf_id, target))
        Path(target).mkdir(parents=True)
        (Path(target) / "config.json").write_text("{}")

    return download


def _fake_loader(calls):
    def load(task, task_args, caches):
        calls.append((task, dict(task_args), dict(caches)))
        return f"{task}: 10 samples"

    return load


def test_the_needs_of_a_run_judges_included(study):
    config, plan = study
    models, tasks = needs(config, plan)
    assert {m.name for m in models} == set(config.model_names())  # the judge model too
    assert {t.task for t in tasks} == {"inspect_evals/piqa", "inspect_evals/writingbench"}


def test_check_download_then_check_again(study, tmp_path):
    config, plan = study
    items, manifest_path = stage(config, plan, download=False)
    missing = {i.name for i in items if i.state == ItemState.MISSING}
    assert {"Qwen2.5-32B-Instruct", "piqa", "writingbench"} <= missing
    assert "evalwatt stage --download" in next(i for i in items if i.name == "piqa").detail
    downloads, loads = [], []
    items, _ = stage(
        config,
        plan,
        download=True,
        downloader=_fake_download(downloads),
        loader=_fake_loader(loads),
    )
    assert (
        "Qwen/Qwen2.5-32B-Instruct",
        f"{tmp_path}/models/Qwen/Qwen2.5-32B-Instruct",
    ) in downloads
    assert all(i.ready for i in items), items
    caches = {"HF_HOME": str(tmp_path / "hf"), "INSPECT_EVALS_CACHE_DIR": str(tmp_path / "ie")}
    assert ("inspect_evals/piqa", {}, caches) in loads  # the jobs' caches, not VLLM_*
    manifest = read_contract(StageManifest, manifest_path)
    assert {d.task for d in manifest.datasets} == {
        "inspect_evals/piqa",
        "inspect_evals/writingbench",
    }
    assert all(d.caches == caches for d in manifest.datasets)
    assert {m.source for m in manifest.models} == {"downloaded", "package"}
    # Checked again without --download: staged, from the disk and the manifest.
    items, _ = stage(config, plan, download=False)
    assert all(i.state == ItemState.STAGED for i in items), items
    assert {m.source for m in read_contract(StageManifest, manifest_path).models} == {
        "disk",
        "package",
    }


def test_a_failed_download_is_reported_per_item(study):
    config, plan = study

    def broken(hf_id, target):
        raise OSError("network unreachable")

    def broken_loader(task, args, caches):
        raise RuntimeError("ConnectionError: no route")

    items, _ = stage(config, plan, download=True, downloader=broken, loader=broken_loader)
    failed = {i.name: i.detail for i in items if i.state == ItemState.FAILED}
    assert "network unreachable" in failed["Qwen2.5-32B-Instruct"]
    assert "no route" in failed["piqa"]


def test_the_demo_needs_nothing_to_be_fetched(tmp_path, capsys):
    data = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    data["results_dir"] = str(tmp_path / "results")
    path = tmp_path / "demo.yaml"
    path.write_text(json.dumps(data))
    assert main(["stage", "--configfile", str(path), "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert {i["state"] for i in items} == {"staged", "offline"}
    assert {i["name"] for i in items if i["state"] == "offline"} == {"humaneval", "writingbench"}
    assert Layout.of(tmp_path / "results", "demo").stage_manifest().exists()


def test_a_job_whose_dataset_is_not_staged_fails_at_once(study, tmp_path):
    config, plan = study
    layout = Layout.of(config.results_dir, config.run)
    cell_id = next(c for c in plan.cells if "__piqa__" in c)
    spec = resolve_job(config, plan, layout, "cell", cell_id).spec
    env = {"HF_HOME": str(tmp_path / "hf"), "INSPECT_EVALS_CACHE_DIR": str(tmp_path / "ie")}
    with pytest.raises(
        NotStagedError, match=r"inspect_evals/piqa .* not staged .*evalwatt stage --download"
    ):
        require_staged(spec, env)
    stage(config, plan, download=True, downloader=_fake_download([]), loader=_fake_loader([]))
    require_staged(spec, env)
    with pytest.raises(NotStagedError, match="but this job reads"):
        require_staged(spec, {"HF_HOME": "/elsewhere"})
    base_id = plan.cells[cell_id].baseline
    require_staged(resolve_job(config, plan, layout, "baseline", base_id).spec, {})  # no dataset


def test_an_offline_task_needs_no_manifest(tmp_path):
    from test_status import demo_config

    config = demo_config(tmp_path / "results")
    plan = plan_run(config)
    layout = Layout.of(config.results_dir, config.run)
    for cell_id in plan.cells:
        require_staged(resolve_job(config, plan, layout, "cell", cell_id).spec, {})


def test_a_task_is_instantiated_in_a_fresh_process_with_the_caches(tmp_path):
    said = load_task_online(
        "evalwatt/humaneval_offline", {"timeout_s": 5}, {"HF_HOME": str(tmp_path)}
    )
    assert "164 samples" in said
    with pytest.raises(RuntimeError):
        load_task_online("evalwatt/no_such_task", {}, {})


def _needed(config, plan) -> tuple[set[str], set[str]]:
    models, tasks = needs(config, plan)
    return {m.name for m in models}, {t.key for t in tasks}


def test_per_model_jobs_need_every_cell_of_every_pack(study):
    """A model job runs many cells: staging covers each one's task, as per cell."""
    config, plan = study
    per_model = config.replace(execution="per-model")
    assert _needed(per_model, plan) == _needed(config, plan)
    assert len(_needed(config, plan)[1]) == 2
    one_each = per_model.replace(
        per_model=per_model.per_model.model_copy(update={"max_job_min": 1})
    )  # a job per cell: the same needs again
    assert _needed(one_each, plan) == _needed(config, plan)
