#!/usr/bin/env python3
"""Schema check of the KubeRay manifests in deploy/kuberay/ (no cluster needed).

Every document of every ``*.yaml`` file is checked strictly (unknown fields are
errors, as with ``kubectl apply --validate=strict``):

* Kubernetes kinds (ConfigMap, Deployment, Service, PersistentVolumeClaim, ...)
  against the official Kubernetes OpenAPI schemas shipped by the
  ``kubernetes-validate`` package (``--kubernetes-version``, default its latest).
* ``RayCluster`` (``ray.io/v1``): the RayCluster fields against
  :data:`RAYCLUSTER_SCHEMA`, a transcription of the KubeRay CRD's openAPIV3Schema
  (``ray-operator/config/crd/bases/ray.io_rayclusters.yaml``: every field of
  ``spec``, ``headGroupSpec`` and ``workerGroupSpecs``, their types and required
  lists), and each group's pod ``template`` against Kubernetes' own
  ``PodTemplateSpec`` schema (the CRD embeds that same schema, generated from the
  same Kubernetes types).
* With ``--crd FILE`` (the CRD itself, e.g. from ``kubectl get crd rayclusters.ray.io
  -o yaml`` or a KubeRay release), RayClusters are also validated against the
  CRD's own openAPIV3Schema (the served storage version), made strict.

Usage::

    python scripts/check_kuberay.py                       # deploy/kuberay/*.yaml
    python scripts/check_kuberay.py --crd ray.io_rayclusters.yaml

Exit status 0 when every document passes, 1 otherwise (each problem printed with
its file, document and path).
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[1]

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_INT = {"type": "integer"}
_TEMPLATE = {"type": "object"}  # checked separately against Kubernetes' PodTemplateSpec
_QUANTITY_MAP = {
    "type": "object",
    "additionalProperties": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
}

RAYCLUSTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayCluster"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["headGroupSpec"],
            "additionalProperties": False,
            "properties": {
                "suspend": {"type": "boolean"},
                "managedBy": {"type": "string"},
                "rayVersion": {"type": "string"},
                "enableInTreeAutoscaling": {"type": "boolean"},
                "headServiceAnnotations": _STR_MAP,
                "autoscalerOptions": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "env": {"type": "array"},
                        "envFrom": {"type": "array"},
                        "idleTimeoutSeconds": _INT,
                        "image": {"type": "string"},
                        "imagePullPolicy": {"type": "string"},
                        "resources": {
                            "type": "object",
                            "properties": {"limits": _QUANTITY_MAP, "requests": _QUANTITY_MAP},
                        },
                        "securityContext": {"type": "object"},
                        "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
                        "version": {"type": "string"},
                        "volumeMounts": {"type": "array"},
                    },
                },
                "gcsFaultToleranceOptions": {"type": "object"},
                "headGroupSpec": {
                    "type": "object",
                    "required": ["rayStartParams", "template"],
                    "additionalProperties": False,
                    "properties": {
                        "enableIngress": {"type": "boolean"},
                        "headService": {"type": "object"},
                        "rayStartParams": _STR_MAP,
                        "serviceType": {"type": "string"},
                        "template": _TEMPLATE,
                    },
                },
                "workerGroupSpecs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [
                            "groupName",
                            "maxReplicas",
                            "minReplicas",
                            "rayStartParams",
                            "template",
                        ],
                        "additionalProperties": False,
                        "properties": {
                            "suspend": {"type": "boolean"},
                            "groupName": {"type": "string"},
                            "replicas": _INT,
                            "minReplicas": _INT,
                            "maxReplicas": _INT,
                            "idleTimeoutSeconds": _INT,
                            "numOfHosts": _INT,
                            "rayStartParams": _STR_MAP,
                            "scaleStrategy": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "workersToDelete": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                    }
                                },
                            },
                            "template": _TEMPLATE,
                        },
                    },
                },
            },
        },
        "status": {"type": "object"},
    },
}
"""RayCluster fields of the KubeRay CRD (ray.io/v1), pod templates left to
:func:`check_pod_template`."""


def documents(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8") as fh:
        for i, doc in enumerate(yaml.safe_load_all(fh)):
            if doc is not None:
                yield i, doc


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<root>"


def check_kubernetes(doc: Any, version: str) -> list[str]:
    """Problems of a Kubernetes object (strict), via ``kubernetes-validate``."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.path) or "<root>"
        return [f"{where}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"no Kubernetes schema for {doc.get('apiVersion')}/{doc.get('kind')}: {e}"]
    return []


def check_pod_template(template: Any, where: str, version: str) -> list[str]:
    """Problems of a pod template, checked as the template of a core/v1 PodTemplate."""
    wrapper = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "template"},
        "template": template,
    }
    return [f"{where}.{p.removeprefix('template.')}" for p in check_kubernetes(wrapper, version)]


def strict_crd_schema(crd: Any) -> dict[str, Any]:
    """The storage version's openAPIV3Schema of a CRD, as a strict JSON Schema.

    Objects with ``properties`` and no ``additionalProperties`` (or
    ``x-kubernetes-preserve-unknown-fields``) get ``additionalProperties: false``;
    ``nullable: true`` allows null.
    """
    versions = crd["spec"]["versions"]
    version = next((v for v in versions if v.get("storage")), versions[0])
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            if node.pop("nullable", False) and "type" in node:
                node["type"] = [node["type"], "null"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # metadata is validated by the API server itself, not by the CRD.
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    return schema


def check_raycluster(doc: Any, version: str, crd_schema: dict[str, Any] | None) -> list[str]:
    problems = [
        f"{_where(e)}: {e.message}"
        for e in jsonschema.Draft7Validator(RAYCLUSTER_SCHEMA).iter_errors(doc)
    ]
    spec = doc.get("spec", {}) if isinstance(doc, dict) else {}
    head = spec.get("headGroupSpec", {})
    if isinstance(head, dict) and "template" in head:
        problems += check_pod_template(head["template"], "spec.headGroupSpec.template", version)
    for i, group in enumerate(spec.get("workerGroupSpecs", []) or []):
        if isinstance(group, dict) and "template" in group:
            where = f"spec.workerGroupSpecs.{i}.template"
            problems += check_pod_template(group["template"], where, version)
    if crd_schema is not None:
        problems += [
            f"(CRD) {_where(e)}: {e.message}"
            for e in jsonschema.Draft7Validator(crd_schema).iter_errors(doc)
        ]
    return problems


def check_files(
    paths: list[Path], version: str, crd_schema: dict[str, Any] | None = None
) -> dict[str, list[str]]:
    """``{"file#doc kind/name": [problems]}`` for every document of ``paths``."""
    results: dict[str, list[str]] = {}
    for path in paths:
        for i, doc in documents(path):
            name = doc.get("metadata", {}).get("name", "?") if isinstance(doc, dict) else "?"
            kind = doc.get("kind", "?") if isinstance(doc, dict) else "?"
            key = f"{path.name}#{i} {kind}/{name}"
            if kind == "RayCluster":
                results[key] = check_raycluster(doc, version, crd_schema)
            else:
                results[key] = check_kubernetes(doc, version)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path, help="manifests (default deploy/kuberay/*.yaml)")
    ap.add_argument("--crd", type=Path, help="the RayCluster CRD (also validate against it)")
    ap.add_argument("--kubernetes-version", help="Kubernetes schema version (default: latest)")
    args = ap.parse_args(argv)
    import kubernetes_validate

    version = args.kubernetes_version or kubernetes_validate.latest_version()
    files = args.files or sorted((REPO / "deploy" / "kuberay").glob("*.yaml"))
    crd_schema = None
    if args.crd is not None:
        crd = next(d for _, d in documents(args.crd) if d.get("kind") == "CustomResourceDefinition")
        crd_schema = strict_crd_schema(crd)
    results = check_files(files, version, crd_schema)
    bad = 0
    for key, problems in results.items():
        print(f"{'FAIL' if problems else 'ok  '} {key}")
        for p in problems:
            print(f"       {p}")
        bad += bool(problems)
    extra = ", and the CRD's own schema" if crd_schema is not None else ""
    print(
        f"{len(results) - bad} of {len(results)} documents valid (Kubernetes {version} schemas, "
        f"RayCluster ray.io/v1 fields{extra})"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
