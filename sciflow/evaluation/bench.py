"""The benchmark runner behind ``sciflow bench SPEC.yaml``.

A spec is a YAML file with ``name``, ``script`` (a Python file, relative to the spec, defining
``run(params: dict, out_dir: Path) -> Report``) and ``params``. The runner imports the script,
runs it, and writes ``<name>.json`` and ``<name>.md`` (plus whatever plots the script saved)
under the output folder, ``benchmarks/results/`` by default.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from sciflow.atomic import write_text_atomic


@dataclass
class Report:
    """What a benchmark script returns: machine-readable ``results`` and a Markdown body."""

    results: dict
    markdown: str
    plots: list[str] = field(default_factory=list)


def machine_info() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def load_spec(spec_path: str | os.PathLike) -> dict:
    """Read and check a benchmark spec; errors name the file and the field."""
    path = Path(spec_path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark spec: no file at {path}")
    spec = yaml.safe_load(path.read_text()) or {}
    for key in ("name", "script"):
        if key not in spec:
            raise ValueError(f"{path}: missing field {key!r} (a spec needs name, script, params)")
    script = path.parent / spec["script"]
    if not script.is_file():
        raise FileNotFoundError(f"{path}: field 'script' points to {script}, which does not exist")
    spec["script_path"] = script
    spec.setdefault("params", {})
    return spec


def run_benchmark(
    spec_path: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    overrides: dict | None = None,
) -> Path:
    """Run the benchmark in ``spec_path``; returns the JSON file written."""
    spec = load_spec(spec_path)
    out = Path(out_dir) if out_dir is not None else Path("benchmarks/results")
    params = {**spec["params"], **(overrides or {})}
    module_spec = importlib.util.spec_from_file_location(
        f"bench_{spec['name']}", spec["script_path"]
    )
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    started = time.time()
    report: Report = module.run(params, out)
    payload = {
        "name": spec["name"],
        "spec": str(spec_path),
        "params": params,
        "machine": machine_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "wall_seconds": round(time.time() - started, 2),
        "results": report.results,
        "plots": report.plots,
    }
    json_path = out / f"{spec['name']}.json"
    write_text_atomic(json_path, json.dumps(payload, indent=2) + "\n")
    header = (
        f"# {spec['name']}\n\nReproduce: `sciflow bench {spec_path}`  \n"
        f"Machine: {payload['machine']['platform']}, {payload['machine']['cpu_count']} CPUs, "
        f"torch {payload['machine']['torch']}, {payload['started']}\n\n"
    )
    write_text_atomic(out / f"{spec['name']}.md", header + report.markdown + "\n")
    return json_path
