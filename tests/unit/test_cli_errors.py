"""Command-line mistakes end in one clear line and leave nothing behind."""

from __future__ import annotations

from pathlib import Path

from skewless.cli import main


def test_serve_takes_a_registry_file_not_a_model_registry_url(capsys):
    assert main(["serve", "--registry", "http://localhost:8080"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("skewless serve: error: --registry http://localhost:8080: serve follows")
    assert not Path("http:").exists()


def test_serve_with_a_missing_registry_file_creates_none(tmp_path: Path, capsys):
    missing = tmp_path / "typo" / "registry.db"
    assert main(["serve", "--registry", str(missing)]) == 1
    assert f"--registry: no registry at {missing}" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()
