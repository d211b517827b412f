"""``kgx info``: what a bug report needs, without a traceback when torch is broken; one version
everywhere; and kgx refusing to run mixed with Biolink's KGX."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kgx
import kgx.environment as environment
from kgx.cli import app
from kgx.version import DISTRIBUTION, __version__


def test_info_names_kgx_python_torch_the_libraries_and_the_encoder() -> None:
    res = CliRunner().invoke(app, ["info"])
    assert res.exit_code == 0, res.output
    first = res.stdout.splitlines()[0]
    assert __version__ in first and DISTRIBUTION in first
    for name in ("python", "torch", "transformers", "faiss", "pyoxigraph", "ray", "encoder"):
        assert any(line.startswith(name) for line in res.stdout.splitlines()), name


def test_info_json_is_the_same_facts() -> None:
    res = CliRunner().invoke(app, ["info", "--json"])
    assert res.exit_code == 0, res.output
    facts = json.loads(res.stdout)
    assert facts["kgx"]["version"] == __version__
    assert facts["kgx"]["distribution"] == "kgx-wiki"
    assert facts["libraries"]["ray"]["extra"] == "cluster"
    assert facts["libraries"]["transformers"]["extra"] == "model"
    assert Path(facts["kgx"]["ontology"], "kgx.ttl").exists()


def test_a_torch_that_fails_to_import_is_reported_not_raised(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    monkeypatch.setattr(environment, "_version_of",
                        lambda names: "2.99.0+cu999" if names == ("torch",) else None)
    facts = environment.describe()
    assert facts["torch"]["device"] is None
    assert "import torch fails" in facts["torch"]["note"]
    text = environment.render(facts)
    assert "Traceback" not in text
    assert "torch          2.99.0+cu999 - installed, but import torch fails" in text
    assert "need the 'model' extra" in text
    assert "transformers   not installed (extra: model)" in text


def test_without_torch_info_says_which_commands_need_the_model_extra(monkeypatch) -> None:
    monkeypatch.setattr(environment, "_version_of", lambda names: None)
    text = environment.render(environment.describe())
    assert "torch          not installed" in text
    assert "kgx train" in text and "need the 'model' extra" in text
    assert "encoder        all-MiniLM-L6-v2 (--base-model minilm): not installed" in text


def test_the_version_is_one(sample_corpus: Path, tiny_model) -> None:
    res = CliRunner().invoke(app, ["--version"])
    assert res.stdout.split()[1] == __version__ == kgx.__version__
    graph = Path(json.loads((sample_corpus / "stats.json").read_text("utf-8"))["graph"])
    assert json.loads((graph / "report.json").read_text("utf-8"))["version"] == __version__
    model_dir, _ = tiny_model
    assert f"fine-tuned by kgx {__version__} " in (model_dir / "README.md").read_text("utf-8")


def test_kgx_refuses_to_import_beside_biolinks_kgx(tmp_path: Path) -> None:
    """Biolink's KGX installed into the same folder leaves its modules beside ours."""
    pkg = tmp_path / "kgx"
    pkg.mkdir()
    src = Path(kgx.__file__).parent
    for name in ("__init__.py", "version.py"):
        shutil.copy(src / name, pkg / name)
    probe = [sys.executable, "-c", "import kgx"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    assert subprocess.run(probe, env=env, cwd=tmp_path, capture_output=True).returncode == 0
    (pkg / "transformer.py").write_text("class Transformer: ...\n")
    res = subprocess.run(probe, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode != 0
    assert "Biolink's KGX" in res.stderr and "cannot share an environment" in res.stderr


@pytest.mark.parametrize("field", ["name", "dynamic"])
def test_the_distribution_name_and_version_come_from_one_place(field: str) -> None:
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text("utf-8")
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    if field == "name":
        assert f'name = "{DISTRIBUTION}"' in project
    else:
        assert 'dynamic = ["version"]' in project
        assert 'version = { attr = "kgx.version.__version__" }' in text


def test_the_changelog_has_the_version() -> None:
    text = (Path(__file__).parent.parent / "CHANGELOG.md").read_text("utf-8")
    assert f"\n## {__version__} (" in text, f"CHANGELOG.md has no entry for {__version__}"
