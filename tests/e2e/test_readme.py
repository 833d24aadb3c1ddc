"""Every command in README.md's code blocks, run as a user would, on tiny data.

The README is parsed, not copied: each command line is matched to how it runs here (the same
command with a small row count, free ports, ``--no-serve`` where it would serve forever) or to the
one reason it cannot run on this machine (it needs Docker or a cluster) and the test that covers
it instead. A command added to the README that this file does not know fails the test, so the
README cannot drift from what works. Optional flags in ``[...]`` are checked against the
command's ``--help``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from support import REPO, SKEWLESS, _wait_ready, example, free_port, post, serving

README = REPO / "README.md"
ROWS = "3000"
# Small data: a short run, a looser calibration bound than the default gate's (its default fits
# 10k rows and up; the taxi test shows the default gate on real data), and no retrieval lift over
# popularity (3k rows hold about 2k items seen once: no retrieval model beats the bestsellers
# there; bench/results/retrieval.md measures it at full size).
PIPELINE_ARGS = ["--rows", ROWS, "--param", "epochs=2", "--param", "max_calibration_error=0.2",
                 "--param", "min_recall_lift=0"]  # fmt: skip

# Commands that need Docker or a Kubernetes cluster, which these machines do not have, and where
# what can be checked here is checked instead.
NOT_HERE = {
    "make cluster": "kind cluster: tests/unit/test_cluster_script.py runs the bring-up script dry",
    "make image image-load": "Docker: tests/unit/test_manifests.py checks the Dockerfile (checkov)",
    "kubectl apply -k manifests/overlays/kind-standard": (
        "a cluster: tests/unit/test_manifests.py renders every overlay and validates each object"
    ),
    "skewless upload": "KFP's object store: tests/unit/test_submit.py uploads to a real S3 server",
    "skewless submit": "KFP's API: tests/unit/test_submit.py submits to a stand-in of its REST API",
    "make cluster-down": "a kind cluster",
    "make bench": "minutes of load on every core: `make bench` is the benchmark itself",
    "make test": "this suite",
}


def readme_commands() -> list[str]:
    """Command lines of the README's code blocks: continuations joined, comments dropped."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if not line or line.startswith("#"):
                continue
            pending = f"{pending} {line}".strip()
            try:
                shlex.split(pending)
            except ValueError:  # a quoted argument (curl's JSON body) goes on
                continue
            commands.append(re.sub(r"\s+", " ", pending))
            pending = ""
        assert not pending, f"unclosed quote in README: {pending}"
    return commands


def _not_here(command: str) -> str | None:
    return next((why for prefix, why in NOT_HERE.items() if command.startswith(prefix)), None)


def _literal(command: str) -> tuple[list[str], list[str]]:
    """The command without its optional ``[...]`` parts, and the flags those parts name."""
    optional = re.findall(r"\[([^\]]*)\]", command)
    literal = re.sub(r"\s*\[[^\]]*\]", "", command)
    flags = [flag for part in optional for flag in re.findall(r"--[\w-]+", part)]
    return shlex.split(literal), flags


def _cli(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def _check_flags(argv: list[str], flags: list[str], cwd: Path) -> None:
    words = [word for word in argv[1:] if not word.startswith("-")][:2]
    nested = words[:1] in (["models"], ["experiment"])  # commands with actions
    helped = _cli([*SKEWLESS, *words[: 2 if nested else 1], "--help"], cwd)
    assert helped.returncode == 0, helped.stderr
    for flag in flags:
        assert flag in helped.stdout, f"README names {flag} for {' '.join(argv)}; --help lacks it"


class Walk:
    """Runs the README's commands in order in one folder, as a user following it would."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.ran: list[str] = []

    def run(self, command: str) -> None:
        if command.startswith("curl "):  # sent to the server `make run` ends with
            assert command in self.ran, "the README's curl must follow `make run`"
            return
        argv, flags = _literal(command)
        if argv[0] == "skewless" and flags:
            _check_flags(argv, flags, self.cwd)
        handler = getattr(self, f"_{argv[0]}_{argv[1].replace('-', '_')}", None)
        assert handler is not None, f"README command not known to this test: {command}"
        handler(argv, command)

    def ok(self, argv: list[str], timeout: float = 900) -> str:
        completed = _cli(argv, self.cwd, timeout)
        assert completed.returncode == 0, (
            f"{' '.join(argv)} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
        )
        return completed.stdout

    def skewless(self, argv: list[str], *extra: str) -> str:
        return self.ok([*SKEWLESS, *argv[1:], *extra])

    # make run, then the README's curl against the server it ends with
    def _make_run(self, argv: list[str], command: str) -> None:
        http, grpc = free_port(), free_port()
        run_args = [*PIPELINE_ARGS, "--http-port", str(http), "--grpc-port", str(grpc)]
        with tempfile.TemporaryFile(mode="w+") as log:
            process = subprocess.Popen(
                ["make", "-C", str(REPO), "run", f"WORKDIR={self.cwd / 'runs' / 'default'}",
                 f"RUN_ARGS={shlex.join(run_args)}"],
                stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            )  # fmt: skip
            try:
                _wait_ready(f"http://127.0.0.1:{http}/v2/models/ranking/ready", process, log, 900)
                for curl in (c for c in readme_commands() if c.startswith("curl ")):
                    local = curl.replace("localhost:8080", f"127.0.0.1:{http}")
                    (answer,) = json.loads(self.ok(["bash", "-c", local]))["predictions"]
                    if "recommend" in curl:  # the two-stage endpoint: k items, best first
                        assert len(answer["items"]) == 5, answer
                        assert answer["scores"] == sorted(answer["scores"], reverse=True)
                    else:
                        assert 0.0 < answer < 1.0
                    self.ran.append(curl)
            finally:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)

    def _skewless_generate(self, argv: list[str], command: str) -> None:
        argv[argv.index("--rows") + 1] = ROWS
        self.skewless(argv)
        assert (self.cwd / argv[argv.index("--out") + 1]).is_file()

    def _skewless_validate(self, argv: list[str], command: str) -> None:
        self.skewless(argv)
        out = self.cwd / argv[argv.index("--out") + 1]
        assert json.loads((out / "ingest_summary.json").read_text())["rows_in"] == int(ROWS)

    def _skewless_stats(self, argv: list[str], command: str) -> None:
        # Each shard validated apart, as one KFP task or one machine each would.
        out = argv[argv.index("--out") + 1]
        shards = [a for a in argv[3:] if not a.startswith("--") and a != out]
        rows = 0
        for seed, shard in enumerate(shards, start=20):
            data = f"{shard}.parquet"
            self.skewless(["skewless", "generate", "--rows", ROWS, "--seed", str(seed),
                           "--out", data, "--quiet"])  # fmt: skip
            self.skewless(["skewless", "validate", "--data", data, "--out", shard, "--quiet"])
            rows += json.loads((self.cwd / shard / "ingest_summary.json").read_text())["rows_clean"]
        assert json.loads(self.skewless(argv))["shards"] == shards
        merged = json.loads((self.cwd / out / "stats.json").read_text())
        assert merged["train"]["rows"] + merged["eval"]["rows"] == rows

    def _skewless_analyze(self, argv: list[str], command: str) -> None:
        # The README passes Flink options after --; a local Beam runner stands in for Flink.
        beam = argv.index("--")
        assert argv[beam + 1] == "--runner=FlinkRunner"
        self.skewless([*argv[:beam], "--", "--runner=DirectRunner"])
        assert any((self.cwd / argv[argv.index("--out") + 1]).rglob("saved_model.pb"))

    def _skewless_run(self, argv: list[str], command: str) -> None:
        if "--data" in argv:  # bring your own data: the file the spec was drafted from
            self.skewless(argv, "--no-serve", *PIPELINE_ARGS[2:])
            summary = json.loads((self.cwd / "runs" / "mine" / "run_summary.json").read_text())
            assert summary["rows"]["rows_quarantined"] == 0 and summary["deployed"]
            return
        # A second run into make run's workdir: gated against production, it becomes a canary.
        out = self.skewless(argv, "--no-serve", "--workdir", "runs/default", *PIPELINE_ARGS)
        assert "is a canary taking" in out, out

    def _skewless_serve(self, argv: list[str], command: str) -> None:
        model = self.cwd / argv[argv.index("--model") + 1]
        with serving(str(model)) as server:
            status, body, _ = post(f"{server['http']}/v1/models/ranking:predict",
                                   {"instances": [example()]})  # fmt: skip
        assert status == 200 and len(body["predictions"]) == 1

    def _skewless_skew_report(self, argv: list[str], command: str) -> None:
        # A server on the run's registry and feature store logs every row it scores by id (make
        # run's server logged a 5% sample, which may hold the README's made-up full row: a
        # client's own values, which the report would rightly call skewed; start clean).
        log = self.cwd / argv[argv.index("--feature-log") + 1]
        log.unlink(missing_ok=True)
        registry = self.cwd / "runs" / "default" / "models" / "registry.db"
        repo = self.cwd / argv[argv.index("--feature-store") + 1]
        rows = [{"user_id": "u006160", "item_id": "i28641", "hour": h, "weekday": "Fri"}
                for h in range(3)]  # fmt: skip
        with serving("", "--registry", str(registry), "--feature-store", str(repo),
                     "--feature-log-sample", "1") as server:  # fmt: skip
            status, body, headers = post(f"{server['http']}/v1/models/ranking:predict",
                                         {"instances": rows})  # fmt: skip
        assert status == 200, body
        assert "age" in headers["x-skewless-looked-up"]
        out = self.skewless(argv)
        assert "3 served rows" in out and "skewed: none" in out, out

    def _skewless_models(self, argv: list[str], command: str) -> None:
        out = self.skewless(argv)
        assert "ranking" in out

    def _skewless_canary(self, argv: list[str], command: str) -> None:
        assert "version 2 takes 50% of" in self.skewless(argv)

    def _skewless_simulate(self, argv: list[str], command: str) -> None:
        # Against a server on the run's registry (make run's server has stopped by now), with a
        # fraction of the README's traffic.
        registry = self.cwd / "runs" / "default" / "models" / "registry.db"
        argv[argv.index("--units") + 1], argv[argv.index("--requests") + 1] = "200", "600"
        with serving("", "--registry", str(registry)) as server:
            argv[argv.index("--endpoint") + 1] = server["http"]
            out = self.skewless(argv)
        assert "600 requests" in out and "version 1:" in out and "version 2:" in out, out

    def _skewless_experiment(self, argv: list[str], command: str) -> None:
        out = self.skewless(argv)
        if argv[2] == "report":
            assert "experiment ranking:1:2 (candidate share 50%)" in out and "decision:" in out
        else:
            assert out.startswith("ranking: would "), out

    def _skewless_ab_report(self, argv: list[str], command: str) -> None:
        out = self.skewless(argv)
        assert "production" in out  # make run's server logged the curl request

    def _skewless_promote(self, argv: list[str], command: str) -> None:
        assert "production is now version 2" in self.skewless(argv)

    def _skewless_rollback(self, argv: list[str], command: str) -> None:
        assert "production is now version 1" in self.skewless(argv)

    def _skewless_compile(self, argv: list[str], command: str) -> None:
        self.skewless(argv, "--out", "compiled.yaml")
        committed = (REPO / "pipelines" / "ranking_pipeline.yaml").read_text()
        assert (self.cwd / "compiled.yaml").read_text() == committed

    def _skewless_spec(self, argv: list[str], command: str) -> None:
        data = argv[argv.index("--data") + 1]
        self.skewless(["skewless", "generate", "--rows", ROWS, "--seed", "3", "--out", data])
        self.skewless(argv)
        assert "clicked" in (self.cwd / argv[argv.index("--out") + 1]).read_text()


def test_readme_has_the_commands_this_test_runs():
    commands = readme_commands()
    assert any(c.startswith("make run") for c in commands)
    assert any(c.startswith("skewless spec infer") for c in commands)
    assert any(c.startswith("curl ") for c in commands)


def test_every_readme_command_runs(tmp_path: Path):
    walk = Walk(tmp_path)
    skipped = []
    for command in readme_commands():
        why = _not_here(command)
        if why is not None:
            argv, flags = _literal(command)
            if argv[0] == "skewless":
                _check_flags(argv, flags + [a for a in argv if a.startswith("--")], tmp_path)
            skipped.append(command)
            continue
        started = time.perf_counter()
        walk.run(command)
        walk.ran.append(command)
        print(f"{time.perf_counter() - started:6.1f} s  {command}")
    assert set(skipped) | set(walk.ran) == set(readme_commands())


@pytest.mark.parametrize("command", sorted(NOT_HERE))
def test_every_command_that_cannot_run_here_is_still_in_the_readme(command: str):
    assert any(c.startswith(command) for c in readme_commands()), f"stale entry: {command}"
