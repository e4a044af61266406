"""The KubeRay manifests pass the schema check (Kubernetes' own schemas for pod
templates and built-in kinds, the KubeRay CRD's RayCluster fields), the check catches
the mistakes it is for, and the fleet and pipeline in the driver's ConfigMap load."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip(
    "kubernetes_validate",
    reason="kubernetes-validate not installed (pip install kubernetes-validate)",
)

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((REPO / "deploy" / "kuberay").glob("*.yaml"))


def _load_checker() -> Any:
    spec = importlib.util.spec_from_file_location(
        "check_kuberay", REPO / "scripts" / "check_kuberay.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_kuberay"] = module
    spec.loader.exec_module(module)
    return module


check = _load_checker()


def raycluster() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "deploy" / "kuberay" / "raycluster.yaml").read_text())
    assert doc["kind"] == "RayCluster"
    return doc


def test_every_manifest_is_valid() -> None:
    import kubernetes_validate

    results = check.check_files(MANIFESTS, kubernetes_validate.latest_version())
    assert results and all(not problems for problems in results.values()), results
    kinds = {key.split()[1].split("/")[0] for key in results}
    assert {"RayCluster", "Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"} <= kinds


def test_the_cluster_has_cpu_gpu_and_jetson_groups() -> None:
    groups = {g["groupName"]: g for g in raycluster()["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu-workers", "gpu-workers", "jetson-workers"}
    gpu = groups["gpu-workers"]["template"]["spec"]["containers"][0]["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == "1"
    jetson = groups["jetson-workers"]
    assert jetson["template"]["spec"]["nodeSelector"]["kubernetes.io/arch"] == "arm64"
    assert jetson["template"]["spec"]["tolerations"]
    for name, kind in (
        ("cpu-workers", "cpu"),
        ("gpu-workers", "gpu"),
        ("jetson-workers", "jetson"),
    ):
        assert groups[name]["rayStartParams"]["labels"] == f"streamer.io/accelerator={kind}"


def _head(d: dict[str, Any]) -> dict[str, Any]:
    return d["spec"]["headGroupSpec"]


def _worker(d: dict[str, Any], i: int) -> dict[str, Any]:
    return d["spec"]["workerGroupSpecs"][i]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: _worker(d, 0).pop("groupName"), "'groupName' is a required"),
        (lambda d: _head(d)["rayStartParams"].update({"num-cpus": 0}), "not of type 'string'"),
        (lambda d: d["spec"].update({"workerGroups": []}), "Additional properties"),
        (
            lambda d: _worker(d, 1)["template"]["spec"].update({"nodeSelectr": {}}),
            "spec.workerGroupSpecs.1.template",
        ),
        (
            lambda d: _head(d)["template"]["spec"]["containers"][0].update({"imag": "x"}),
            "spec.headGroupSpec.template",
        ),
    ],
)
def test_the_check_catches_mistakes(mutate: Any, expected: str) -> None:
    import kubernetes_validate

    doc = copy.deepcopy(raycluster())
    mutate(doc)
    problems = check.check_raycluster(doc, kubernetes_validate.latest_version(), None)
    assert any(expected in p for p in problems), problems


CRD = """
kind: CustomResourceDefinition
spec:
  versions:
    - {name: v1alpha1, storage: false, schema: {openAPIV3Schema: {}}}
    - name: v1
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties: {rayVersion: {type: string, nullable: true}}
            status: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


def test_against_a_crd_schema_made_strict() -> None:
    import jsonschema

    schema = check.strict_crd_schema(yaml.safe_load(CRD))
    ok = {"metadata": {"name": "x"}, "spec": {"rayVersion": None}, "status": {"any": 1}}
    assert not list(jsonschema.Draft7Validator(schema).iter_errors(ok))
    bad = {"spec": {"rayVersion": "2", "typo": 1}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(bad))


def test_the_configmap_fleet_and_pipeline_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamer.fleet.loader import load_fleet

    docs = list(yaml.safe_load_all((REPO / "deploy" / "kuberay" / "fleet-driver.yaml").read_text()))
    data = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setenv("CAM_USER", "viewer")
    monkeypatch.setenv("CAM_PASS", "pw")
    fleet = load_fleet(tmp_path / "fleet.yaml")
    assert {c.group for c in fleet.cameras} == {"entrances", "parking", "yard"}
    assert all(c.live for c in fleet.cameras)
    driver = next(d for d in docs if d["kind"] == "Deployment")
    command = driver["spec"]["template"]["spec"]["containers"][0]["command"]
    assert (
        command[:3] == ["streamer", "fleet", "run"]
        and "ray://streamer-fleet-head-svc:10001" in command
    )
