"""Command-line mistakes end in one clear line and leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from skewless.cli import main


def test_serve_from_an_unreachable_model_registry_is_one_clear_line():
    import subprocess

    from support import SKEWLESS, free_port

    # A process of its own, as a user runs it: serve configures the process's logging.
    port = free_port()
    done = subprocess.run(
        [*SKEWLESS, "serve", "--registry", f"http://127.0.0.1:{port}",
         "--http-port", str(free_port()), "--grpc-port", str(free_port())],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"skewless serve: error: cannot reach the Model Registry at http://127.0.0.1:{port}"
        )
    )


def test_serve_with_a_missing_registry_file_creates_none(tmp_path: Path, capsys):
    missing = tmp_path / "typo" / "registry.db"
    assert main(["serve", "--registry", str(missing)]) == 1
    assert f"--registry: no registry at {missing}" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize(
    "flags",
    [["--feature-log", "f.jsonl"], ["--allow-push"], ["--feature-log-sample", "1"]],
)
def test_feature_store_flags_without_a_feature_store_are_refused(tmp_path: Path, capsys, flags):
    assert main(["serve", "--model", str(tmp_path), *flags]) == 1
    assert _one_line(capsys) == f"skewless serve: error: {flags[0]} needs --feature-store"


def test_a_folder_that_is_not_a_feature_repository_is_one_clear_line(tmp_path: Path, capsys):
    assert main(["serve", "--model", str(tmp_path), "--feature-store", str(tmp_path)]) == 1
    assert _one_line(capsys).endswith(
        f"--feature-store: {tmp_path} is not a feature repository written by the materialize "
        "step (no feature_store.yaml and views.json)"
    )


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


REGISTRY_COMMANDS = [
    ["models", "list"],
    ["models", "show", "ranking"],
    ["rollback", "ranking"],
    ["canary", "ranking", "--percent", "5"],
    ["promote", "ranking"],
]


@pytest.mark.parametrize("command", REGISTRY_COMMANDS)
def test_an_empty_or_garbage_registry_is_one_clear_line(tmp_path: Path, capsys, command):
    registry = tmp_path / "registry.db"
    registry.write_bytes(b"")
    assert main([*command, "--registry", str(registry)]) == 1
    assert f"{registry} is empty (0 bytes), not a registry" in _one_line(capsys)
    assert registry.stat().st_size == 0  # not silently re-created

    registry.write_bytes(b"this is not sqlite " * 100)
    assert main([*command, "--registry", str(registry)]) == 1
    assert f"{registry} is not a readable registry (file is not a database)" in _one_line(capsys)


@pytest.mark.parametrize("name", ["../../../x", "Ranking", "my_model", "-x", "a" * 64, ""])
def test_a_bad_model_name_is_refused_before_anything_runs(tmp_path: Path, capsys, name: str):
    assert (
        main(["run", "--workdir", str(tmp_path / "w"), f"--model-name={name}", "--no-serve"]) == 2
    )
    assert _one_line(capsys).startswith(
        f"skewless run: error: --model-name: model name {name!r}: use lowercase letters, digits "
        "and '-'"
    )
    assert not (tmp_path / "w").exists()


def test_register_refuses_a_bad_name_before_copying(tmp_path: Path):
    from skewless.registry.core import RegistryError
    from skewless.rollout.deploy import register_local

    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_text("x")
    with pytest.raises(RegistryError, match=r"model name '\.\./x'"):
        register_local(model, tmp_path / "repo", "../x", evaluation={}, stats_path=None,
                       run_id="r")  # fmt: skip
    assert not (tmp_path / "x").exists() and not (tmp_path / "repo").exists()


def test_generate_refuses_a_name_whose_format_it_would_not_write(tmp_path: Path, capsys):
    assert main(["generate", "--rows", "10", "--out", str(tmp_path / "x.txt"), "--quiet"]) == 1
    assert "name the file .parquet or .csv" in _one_line(capsys)
    assert not (tmp_path / "x.txt").exists()


def test_ab_report_names_a_line_that_is_not_text(tmp_path: Path, capsys):
    log = tmp_path / "requests.jsonl"
    log.write_bytes(b'\x00\xff\xfe{"a": 1}\n')
    assert main(["ab-report", "--log", str(log)]) == 1
    assert f"{log}:1: not a request record (not UTF-8 text)" in _one_line(capsys)


def test_serve_takes_a_feature_log_sample_of_zero_as_given(tmp_path: Path, capsys):
    assert main(["serve", "--model", str(tmp_path), "--feature-log-sample", "0"]) == 1
    assert _one_line(capsys) == "skewless serve: error: --feature-log-sample needs --feature-store"


def test_parse_checks_what_a_run_would_check():
    import click

    from skewless.cli import parse

    assert parse(["serve", "--model", "m"]).command_path == "skewless serve"
    for argv in (["serve"], ["serve", "--model", "m", "--registry", "r"], ["stats"]):
        with pytest.raises(click.UsageError):
            parse(argv)


def test_validate_takes_a_baseline_stats_folder(tmp_path: Path, capsys):
    from skewless.data.generate import write_dataset

    data = write_dataset(300, 0, tmp_path / "raw.csv", show_progress=False)
    assert main(["validate", "--data", str(data), "--out", str(tmp_path / "base")]) == 0
    assert main(["validate", "--data", str(data), "--out", str(tmp_path / "next"),
                 "--baseline-stats", str(tmp_path / "base")]) == 0  # fmt: skip
    assert '"drifted_features": []' in capsys.readouterr().out  # the same data: nothing drifted
    assert (tmp_path / "next" / "drift.json").is_file()


def test_analyze_names_beam_options_beam_refuses(tmp_path: Path, capsys):
    data = "gs://no-such-bucket/out/train.parquet"  # remote: the runner reads it, not us
    out = tmp_path / "tft"
    assert main(["analyze", "--data", data, "--out", str(out), "--",
                 "--runner=DataflowRunner"]) == 1  # fmt: skip
    line = _one_line(capsys)
    assert line.startswith("skewless analyze: error: Beam refused its options: "), line
    assert "Missing required option: project." in line
    assert not out.exists()


def test_analyze_takes_an_absolute_glob(tmp_path: Path, capsys):
    pattern = str(tmp_path / "nothing-*" / "train.parquet")
    assert main(["analyze", "--data", pattern, "--out", str(tmp_path / "t")]) == 1
    assert f"--data: no file matches {pattern!r}" in _one_line(capsys)


def _cli_error(*argv: str) -> str:
    """Runs the real CLI in its own process (serve configures logging process-wide); returns its
    error line, after checking it failed with no traceback."""
    import subprocess
    import sys

    completed = subprocess.run([sys.executable, "-m", "skewless.cli", *argv], capture_output=True,
                               text=True, timeout=300, check=False)  # fmt: skip
    assert completed.returncode == 1, completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr, completed.stderr[-2000:]
    return completed.stderr.strip().splitlines()[-1]


def test_serve_names_a_taken_port_and_a_model_tensorflow_cannot_load(tmp_path: Path):
    import socket

    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"garbage")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for flag in ("--http-port", "--grpc-port"):
            line = _cli_error("serve", "--model", str(model), flag, port)
            assert f"{flag} {port}: cannot listen there" in line
        line = _cli_error("run", "--workdir", str(tmp_path / "w"), "--http-port", port)
        assert f"--http-port {port}: cannot listen there" in line
        assert not (tmp_path / "w").exists()  # refused before the pipeline
    for command in (["serve", "--model", str(model)], ["run", "--workdir", str(tmp_path / "w")]):
        line = _cli_error(*command, "--http-port", "7", "--grpc-port", "7")
        assert line.endswith(
            "--http-port 7, --grpc-port 7: the REST and gRPC ports are both 7: give two ports"
        )
    assert not (tmp_path / "w").exists()  # refused before the pipeline

    free = [socket.socket() for _ in range(2)]
    for sock in free:
        sock.bind(("127.0.0.1", 0))
    http, grpc = (str(sock.getsockname()[1]) for sock in free)
    for sock in free:
        sock.close()
    line = _cli_error("serve", "--model", str(model), "--http-port", http, "--grpc-port", grpc)
    assert line.startswith("skewless serve: error: --model: ") and "not a SavedModel" in line


def test_rollback_with_no_cluster_says_what_moved_and_what_did_not(tmp_path: Path, capsys,
                                                                    monkeypatch):  # fmt: skip
    from skewless.rollout.deploy import deploy_version, register_local

    repository = tmp_path / "models"
    evaluation = {"metrics": {}, "gate": {"promote": True, "reasons": []}}
    for content in ("one", "two"):
        model = tmp_path / content
        model.mkdir()
        (model / "saved_model.pb").write_text(content)
        version = register_local(model, repository, "ranking", evaluation=evaluation,
                                 stats_path=None, run_id=content)["version"]  # fmt: skip
        deploy_version(repository, "ranking", version, content)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    registry = str(repository / "registry.db")
    assert main(["rollback", "ranking", "--registry", registry, "--kserve", "kubeflow"]) == 1
    err = _one_line(capsys)
    assert "the registry now has version 1 as production, but the InferenceService in " in err
    # Here the local artifact is refused first (a cluster reads object-store URIs); a missing
    # kube config would be named the same way.
    assert "kubeflow did not follow: " in err and err.endswith(
        "run the same command again to retry"
    )
    assert main(["models", "show", "ranking:production", "--registry", registry]) == 0
    assert '"version": 1,' in capsys.readouterr().out


def test_experiment_and_simulate_mistakes_are_one_clear_line(tmp_path: Path, capsys):
    from support import free_port

    assert main(["experiment", "report", "--log", str(tmp_path / "none.jsonl")]) == 1
    assert "no exposure log at" in _one_line(capsys)
    log = tmp_path / "requests.jsonl"
    log.write_text('{"time": 1, "model": "ranking", "experiment": null}\n')
    assert main(["experiment", "report", "--log", str(log)]) == 1
    assert "no experiment for model 'ranking': start a canary" in _one_line(capsys)
    from skewless.registry.sqlite import SQLiteRegistry

    registry = SQLiteRegistry(tmp_path / "registry.db")
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "saved_model.pb").write_bytes(b"m")
    for run in ("a", "b"):
        registry.register("ranking", artifact, metrics={}, gate={"promote": True}, run_id=run,
                          spec_sha256="", stats_sha256="", code_version="t")  # fmt: skip
    registry.set_alias("ranking", "production", 1, actor="t", reason="")
    decide = ["experiment", "decide", "--log", str(log), "--registry", str(registry.path)]
    assert main(decide) == 1
    assert "ranking: no canary is running; nothing to decide" in _one_line(capsys)
    assert main([*decide, "--if-running"]) == 0  # on a schedule, no canary is no failure
    assert capsys.readouterr().out.strip() == "ranking: no canary is running; nothing to decide"
    registry.start_canary("ranking", 2, 10, actor="t")
    assert main([*decide, "--if-running"]) == 0
    assert "no exposures of experiment 'ranking:1:2'" in capsys.readouterr().out
    assert main(decide) == 1
    assert "no exposures of experiment 'ranking:1:2'" in _one_line(capsys)
    log.write_text("not json\n")
    assert main(["experiment", "report", "--log", str(log)]) == 1
    assert f"{log}:1: not an exposure record" in _one_line(capsys)
    port = free_port()
    assert main(["simulate", "--endpoint", f"http://127.0.0.1:{port}", "--units", "2",
                 "--requests", "2"]) == 1  # fmt: skip
    assert f"cannot reach the server at http://127.0.0.1:{port}" in _one_line(capsys)
    assert main(["simulate", "--endpoint", "ftp://x", "--units", "2", "--requests", "2"]) == 1
    assert "--endpoint 'ftp://x': expected http://HOST:PORT" in _one_line(capsys)
    for flags, message in (
        (["--alpha", "1"], "--alpha: 1.0 is not in the range 0.0<x<1.0."),
        (["--mde", "0"], "--mde: 0.0 is not in the range x>0.0."),
        (["--min-units", "0"], "--min-units: 0 is not in the range x>=1."),
    ):
        assert main(["experiment", "report", *flags]) == 2
        assert _one_line(capsys) == f"skewless experiment report: error: {message}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate", "--data", "d.csv", "--out", "o", "--drift-linf", "nan"],
         "skewless validate: error: --drift-linf: expected a finite number, got 'nan'"),
        (["serve", "--model", "m", "--max-body-mb", "inf"],
         "skewless serve: error: --max-body-mb: expected a finite number, got 'inf'"),
        (["canary", "ranking", "--percent", "101"],
         "skewless canary: error: --percent: 101 is not in the range 0<=x<=100."),
        (["experiment", "report", "--mde", "-0.1"],
         "skewless experiment report: error: --mde: -0.1 is not in the range x>0.0."),
        (["generate", "--out", "x.csv", "--rows", "1e3"],
         "skewless generate: error: --rows: '1e3' is not a valid integer."),
        (["serve", "--model", "m", "--http-port", "65536"],
         "skewless serve: error: --http-port: 65536 is not in the range 1<=x<=65535."),
        (["serve", "--model", "m", "--max-batch-rows", "0"],
         "skewless serve: error: --max-batch-rows: 0 is not in the range x>=1."),
        # the command line's other mistakes
        ([], "skewless: error: Missing command."),
        (["nope"], "skewless: error: No such command 'nope'."),
        (["models"], "skewless models: error: Missing command."),
        (["generate"], "skewless generate: error: Missing option '--out'."),
        (["stats", "merge", "--out", "o"],
         "skewless stats merge: error: Missing argument 'SHARDS...'."),
        (["serve"], "skewless serve: error: give one of --model and --registry"),
        (["serve", "--model", "m", "--registry", "r"],
         "skewless serve: error: give one of --model and --registry"),
        (["serve", "--model", "m", "--log-format", "xml"],
         "skewless serve: error: --log-format: 'xml' is not one of 'text', 'json'."),
        (["generate", "--out", "x.csv", "--rowz", "3"],
         "skewless generate: error: No such option '--rowz'. Did you mean '--rows'?"),
        # errors click's parser raises without naming a command still name it
        (["experiment", "decide", "--dry-run=yes"],
         "skewless experiment decide: error: Option '--dry-run' does not take a value."),
        (["spec", "infer", "--data", "x", "--label", "y", "--out"],
         "skewless spec infer: error: Option '--out' requires an argument."),
    ],
)  # fmt: skip
def test_command_line_mistakes_are_one_line_and_exit_2(argv, message, capsys):
    """Numbers are finite and in range; click's own usage errors are one line too."""
    assert main(argv) == 2
    assert _one_line(capsys) == message


def test_help_lists_every_command_and_succeeds(capsys):
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    for command in ("generate", "validate", "run", "serve", "models", "canary", "experiment"):
        assert f"\n  {command} " in listed
    assert main(["experiment", "decide", "--help"]) == 0
    assert "--if-running" in capsys.readouterr().out


def test_an_out_that_cannot_be_written_is_one_clear_line(tmp_path: Path, capsys):
    """Issue 12 item 13: an unwritable ``--out`` was a FileExistsError or NotADirectoryError
    traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way of a folder")
    data = tmp_path / "d.parquet"
    assert main(["generate", "--rows", "200", "--seed", "1", "--out", str(data)]) == 0
    capsys.readouterr()
    cases = [
        (["generate", "--rows", "10", "--seed", "1", "--out", f"{blocker}/x.parquet"],
         f"cannot use {blocker}: File exists"),
        (["validate", "--data", str(data), "--out", f"{blocker}/out"],
         f"cannot use {blocker}/out: Not a directory"),
        (["compile", "--out", f"{blocker}/pipeline.yaml"],
         f"cannot use {blocker}/pipeline.yaml: Not a directory"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 1
        assert _one_line(capsys) == f"skewless {argv[0]}: error: {message}"
    assert blocker.read_text() == "in the way of a folder"


def test_serve_from_an_empty_or_garbage_registry_is_one_clear_line(tmp_path: Path):
    """Issue 12 item 7's last command: ``serve --registry`` (a process of its own: serve
    configures logging)."""
    from support import free_port

    registry = tmp_path / "registry.db"
    cases = [
        (b"", f"--registry: {registry} is empty (0 bytes), not a registry"),
        (b"this is not sqlite " * 100,
         f"{registry} is not a readable registry (file is not a database)"),
    ]  # fmt: skip
    for content, message in cases:
        registry.write_bytes(content)
        ports = ["--http-port", str(free_port()), "--grpc-port", str(free_port())]
        line = _cli_error("serve", "--registry", str(registry), *ports)
        assert line.startswith(f"skewless serve: error: {message}"), line
        assert registry.read_bytes() == content  # not re-created


def test_only_file_errors_about_a_given_path_become_one_line():
    """Any other OSError (a bug's wrong path, too many open files) keeps its traceback."""
    import errno

    from skewless.cli.common import _about_a_given_path

    given = {"out": "/w/blocker/x.parquet", "rows": 10, "spec": None}
    assert _about_a_given_path(FileExistsError(errno.EEXIST, "File exists", "/w/blocker"), given)
    assert _about_a_given_path(OSError(errno.EACCES, "denied", "/w/blocker/x.parquet"), given)
    assert not _about_a_given_path(OSError(errno.ENOENT, "missing", "/opt/internal"), given)
    assert not _about_a_given_path(OSError(errno.EMFILE, "Too many open files"), given)
