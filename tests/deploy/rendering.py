"""Helpers for the deploy tests: the chart rendered offline by the Helm SDK, as objects.

Value sets are the ones users deploy with (defaults, values-dev.yaml, values-gpu.yaml) plus
tests/deploy/values/*.yaml that switch every optional feature on, so each template branch renders.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mofi"
SCHEMAS = REPO.parent / "shared" / "schemas"
KUBE_VERSION = "1.31.0"
RELEASE = "mofi"
NAMESPACE = "mofi"

VALUE_FILES = {
    "default": None,
    "dev": CHART / "values-dev.yaml",
    "gpu": CHART / "values-gpu.yaml",
    "everything": Path(__file__).parent / "values" / "everything.yaml",
    "minimal": Path(__file__).parent / "values" / "minimal.yaml",
}


def load_values(name: str) -> dict[str, Any]:
    path = VALUE_FILES[name]
    return {} if path is None else yaml.safe_load(path.read_text()) or {}


def load_generator():
    """charts/generate_settings.py as a module (it is a script beside the chart, not a package)."""
    spec = importlib.util.spec_from_file_location("generate_settings", REPO / "charts" / "generate_settings.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def render(chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders for ``values`` (NOTES.txt excluded)."""
    out = chart.render(values=copy.deepcopy(values or {}), name=RELEASE, namespace=NAMESPACE)
    objects = []
    for template, text in sorted(out.items()):
        if template.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """The subset of RFC 6902 skaffold profiles use here: add (incl. '-' append) and replace."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] == "replace":
            if isinstance(node, list):
                node[int(last)]  # must exist
                node[int(last)] = op["value"]
            else:
                if last not in node:
                    raise KeyError(f"replace of missing {op['path']}")
                node[last] = op["value"]
        elif op["op"] == "add":
            if isinstance(node, list):
                node.append(op["value"]) if last == "-" else node.insert(int(last), op["value"])
            else:
                node[last] = op["value"]
        else:
            raise ValueError(f"unsupported patch op {op['op']}")
    return doc
