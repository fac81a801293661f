"""examples/kubernetes: the KubeRay manifests parse, take credentials from secrets only, run a
command that composes as our config, and (where KubeRay's CRDs are at hand) match the CRDs'
schemas. No cluster runs them here."""

from __future__ import annotations

import copy
import os
import re
import shlex
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

from ugro_hpo.security.redaction import is_secret_name

FOLDER = REPO / "examples" / "kubernetes"
CRDS_VARIABLE = "UGRO_TEST_KUBERAY_CRDS"  # a folder with KubeRay's ray.io_*.yaml CRDs
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}


def manifests() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(FOLDER.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            found[document["kind"]] = document
    return found


def containers(manifest: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    spec = manifest["spec"]
    groups = [("head", spec["headGroupSpec"])]
    groups += [(g["groupName"], g) for g in spec.get("workerGroupSpecs", [])]
    for name, group in groups:
        for container in group["template"]["spec"]["containers"]:
            yield name, container


def test_the_manifests_are_a_ray_cluster_and_a_ray_job_of_kuberay() -> None:
    found = manifests()
    assert set(found) == {"RayCluster", "RayJob"}
    assert {m["apiVersion"] for m in found.values()} == {"ray.io/v1"}
    cluster, job = found["RayCluster"], found["RayJob"]
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    gpu_groups = [
        name for name, c in containers(cluster) if c["resources"]["limits"].get("nvidia.com/gpu")
    ]
    assert gpu_groups == ["gpu"]


def test_ray_in_the_manifests_and_the_image_is_the_ray_we_test_with() -> None:
    """The cluster, its image and our declared range name one Ray; it is the installed one
    except where the tests run at the range's lower bounds (scripts/lowest-deps)."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.version import Version

    pinned = manifests()["RayCluster"]["spec"]["rayVersion"]
    dockerfile = (FOLDER / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(rf"^FROM rayproject/ray:{re.escape(pinned)}-", dockerfile, re.MULTILINE)
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    ray_range = next(
        Requirement(d) for d in project["dependencies"] if Requirement(d).name == "ray"
    )
    assert ray_range.specifier.contains(pinned), f"Ray {pinned} is outside {ray_range}"
    installed = version("ray")
    floor = next(s.version for s in ray_range.specifier if s.operator == ">=")
    if installed != pinned and Version(installed) == Version(floor):
        pytest.skip(f"Ray {installed} is the declared lower bound (a lowest-deps run); "
                    f"the manifests pin {pinned}")  # fmt: skip
    assert installed == pinned, f"the manifests pin Ray {pinned}, the tests run {installed}"


def test_credentials_come_from_kubernetes_secrets_only() -> None:
    cluster, job = manifests()["RayCluster"], manifests()["RayJob"]
    head_env = {}
    for group, container in containers(cluster):
        for entry in container.get("env", []):
            if is_secret_name(entry["name"]) or entry["name"] == "UGRO_STORAGE":
                assert "value" not in entry, f"{group}: {entry['name']} is written in the file"
                assert "secretKeyRef" in entry["valueFrom"]
            if group == "head":
                head_env[entry["name"]] = entry
    # The job's driver runs on the head and reads the storage URL from its environment.
    assert head_env["UGRO_STORAGE"]["valueFrom"]["secretKeyRef"]["name"] == "ugro-postgres"
    assert "storage=$UGRO_STORAGE" in shlex.split(job["spec"]["entrypoint"], posix=False)
    assert cluster["spec"]["authOptions"] == {"mode": "token", "secretName": "ugro-ray-token"}


def test_the_jobs_command_composes_as_our_config(compose: Callable[..., Any]) -> None:
    words = shlex.split(manifests()["RayJob"]["spec"]["entrypoint"])
    assert words[:3] == ["python", "-m", "ugro_hpo"]
    url = "postgresql://ugro:pw@postgres:5432/ugro_studies"
    cfg = compose(*(w.replace("$UGRO_STORAGE", url) for w in words[3:]))
    assert cfg.storage == url
    assert cfg.ray.address == "auto"  # the job's driver joins the cluster it runs on
    assert cfg.ray.autoscaler is True  # GPU workers start while trials wait for them
    assert cfg.resources.gpu == 1


def strict(schema: Any) -> Any:
    """The CRD's schema as the API server applies it to a new object with strict field
    validation (kubectl's default): an unknown field is an error, not silently dropped."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        if "properties" in schema and "additionalProperties" not in schema and not preserve:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_schema(kind: str) -> dict[str, Any]:
    folder = os.environ.get(CRDS_VARIABLE)
    if not folder or not (Path(folder) / CRD_FILES[kind]).is_file():
        pytest.skip(
            f"KubeRay's CRD schemas are not available here: set {CRDS_VARIABLE} to a folder "
            f"holding {CRD_FILES[kind]} (KubeRay's helm-chart/kuberay-operator/crds)"
        )
    crd = yaml.safe_load((Path(folder) / CRD_FILES[kind]).read_text(encoding="utf-8"))
    assert crd["spec"]["names"]["kind"] == kind
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return strict(served["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_the_manifests_match_kuberays_crd_schema(kind: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = crd_schema(kind)
    manifest = manifests()[kind]
    jsonschema.Draft7Validator(schema).validate(manifest)
    broken = copy.deepcopy(manifest)  # the check itself: a misspelt field is caught
    broken["spec"]["entrypont" if kind == "RayJob" else "workerGroupSpec"] = {}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)
