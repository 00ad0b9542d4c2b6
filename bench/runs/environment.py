"""What a run ran on: library versions, device, platform, git commit. Written to environment.json."""

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "transformers", "trl", "datasets", "accelerate", "tokenizers", "vllm", "openai", "numpy")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


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
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": __import__("os").cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "packages": {package: _version(package) for package in PACKAGES},
        "bench_git_commit": _git_commit(),
    }
