"""The runner continues what was stopped or failed without training again what it need not: a failed step run
again alone (--retry-failed), a training stopped after its first checkpoint continued to the uninterrupted run's
result (resume_training), a step added to the grid run alone on finished runs; real cpu-tiny RTE runs."""
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from fairseq_dpreg.experiment import runner as runner_mod
from fairseq_dpreg.experiment.grid import load_grid, parse_grid
from fairseq_dpreg.experiment.runner import Runner, run_dir
from runner_common import GOOD, PY, SCRIPT, env, events, rte  # noqa: F401 (rte: a fixture)


def test_retry_starts_a_failed_run_again_at_the_step_that_failed(rte, tmp_path):
    """An alignment step that fails (more pairs than the held-out batches hold) does not cost a new training:
    --retry-failed with the grid fixed keeps the training and evaluation records and files and runs the
    alignment alone; a run whose training command changed starts again from nothing."""
    grid = {"pipeline": "superglue", "recipe": "cpu-tiny", "data": str(rte / "bin"), "out": str(tmp_path / "o"),
            "metric": "accuracy", "seeds": [1], "flags": ["--max-update", "2"], "eval_flags": ["--cpu"],
            "baseline": "plain", "alignment": {"pairs": 50, "batch_size": 4},
            "conditions": [{"name": "plain", "algo": "plain"},
                           {"name": "dotprod", "algo": "dotprod", "env": {"DPREG_LAMBDA": 0.1}}]}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(grid))
    rdir = {c: Path(run_dir(load_grid(str(path)), c, 1)) for c in ("plain", "dotprod")}

    def run(*flags):
        path.write_text(yaml.safe_dump(grid))
        proc = subprocess.run([PY, str(SCRIPT), str(path), *flags], env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        return proc, {c: json.loads((d / "result.json").read_text()) for c, d in rdir.items()}

    def stamps(c):
        return [(rdir[c] / f).stat().st_mtime_ns for f in ("ckpt/checkpoint_last.pt", "train.out")]

    def cond_events(c):
        return [e["event"] for e in events(tmp_path / "o") if e["condition"] == c]

    proc, first = run()
    assert proc.returncode == 1, proc.stdout
    assert all(r["status"] == "failed" and "--pairs 50" in r["error"] for r in first.values())
    before = {c: stamps(c) for c in rdir}
    grid["alignment"]["pairs"] = 2
    grid["conditions"][1]["env"]["DPREG_LAMBDA"] = 0.2
    proc, again = run()  # without --retry-failed: failed runs stay failed, nothing runs
    assert proc.returncode == 1 and again == first and cond_events("plain") == ["start", "failed"], proc.stdout
    proc, second = run("--retry-failed")
    assert proc.returncode == 0 and all(r["status"] == "ok" for r in second.values()), proc.stdout
    plain = second["plain"]
    assert stamps("plain") == before["plain"]  # not trained again
    assert plain["steps"][:2] == first["plain"]["steps"][:2] and plain["steps"][2]["rc"] == 0
    assert plain["resumed"]["from"] == "alignment" and "--pairs 50" in plain["resumed"]["previous_error"]
    assert plain["resumed"]["previous_status"] == "failed"
    assert plain["metrics"]["valid"] == first["plain"]["metrics"]["valid"] and plain["metrics"]["alignment"]["pairs"] == 2
    assert plain["wall_s"] == pytest.approx(sum(s["wall_s"] for s in plain["steps"]), abs=2.0)
    assert cond_events("plain") == ["start", "failed", "resume", "ok"]
    # dotprod's training environment changed (DPREG_LAMBDA): trained again from nothing
    assert "resumed" not in second["dotprod"] and stamps("dotprod")[0] != before["dotprod"][0]
    assert second["dotprod"]["steps"][0]["env"]["DPREG_LAMBDA"] == "0.2"
    assert cond_events("dotprod") == ["start", "failed", "start", "ok"]



def test_an_interrupted_training_continues_from_its_checkpoint_to_the_uninterrupted_result(rte, tmp_path):
    """``resume_training``: a grid stopped (SIGTERM) while a run trains, after its first checkpoint, continues that
    training from checkpoint_last.pt on the next invocation (train.sh resumes, fairseq seeds each update by its
    number) and ends with the weights, metrics and fit of the same run never interrupted; its wall time sums the
    attempts and stays out of the report's time columns. Without the key, the same stop starts the training again
    from nothing (the first test)."""
    def grid(out, resume=True):
        g = {"pipeline": "superglue", "recipe": "cpu-tiny", "data": str(rte / "bin"), "out": str(tmp_path / out),
             "metric": "accuracy", "seeds": [1], "eval_flags": ["--cpu"], "baseline": "plain",
             "flags": ["--max-update", "8", "--save-interval-updates", "2", "--keep-interval-updates", "1",
                       "--log-interval", "1"],
             "conditions": [{"name": "plain", "algo": "plain"},  # (not run: --only dotprod)
                            {"name": "dotprod", "algo": "dotprod", "env": {"DPREG_LAMBDA": 0.1}}]}
        path = tmp_path / f"{out}.yaml"
        path.write_text(yaml.safe_dump({**g, "resume_training": resume}))
        return path

    path = grid("stopped")
    out, rdir = tmp_path / "stopped", Path(run_dir(load_grid(str(path)), "dotprod", 1))
    run = [PY, str(SCRIPT), str(path), "--only", "dotprod"]
    proc = subprocess.Popen(run, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (rdir / "ckpt" / "checkpoint_last.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else "slow"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.communicate(timeout=60)[0] and proc.returncode == 128 + signal.SIGTERM
    assert [(e["event"], e.get("step")) for e in events(out)] == [("start", None), ("interrupted", "train")]
    marker = json.loads((rdir / ".run").read_text())
    assert marker["steps"] == [] and [s["name"] for s in marker["interrupted"]] == ["train"]
    assert marker["interrupted"][0]["rc"] != 0 and not (rdir / "result.json").exists()

    dry = subprocess.run([*run, "--dry-run"], env=env(), capture_output=True, text=True)
    assert "(training continues from its checkpoint_last.pt)" in dry.stdout, dry.stdout
    second = subprocess.run(run, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert second.returncode == 0, second.stdout
    assert [(e["event"], e.get("step")) for e in events(out)][2:] == [("resume", "train"), ("ok", None)]
    res = json.loads((rdir / "result.json").read_text())
    train = res["steps"][0]
    assert res["status"] == "ok" and res["resumed"]["from"] == "train" and len(train["attempts"]) == 2
    assert train["wall_s"] == pytest.approx(sum(train["attempts"]), abs=0.01)
    assert "resuming from" in (rdir / "train.out").read_text()
    table = json.loads((out / "results.json").read_text())
    row = next(r for r in table["conditions"] if r["name"] == "dotprod")
    assert row["n"] == 1 and row["train_min"] is None

    whole = grid("whole")
    assert subprocess.run([PY, str(SCRIPT), str(whole), "--only", "dotprod"], env=env(),
                          capture_output=True).returncode == 0
    ref_dir = Path(run_dir(load_grid(str(whole)), "dotprod", 1))
    ref = json.loads((ref_dir / "result.json").read_text())
    assert "attempts" not in ref["steps"][0] and "resumed" not in ref
    timing = ("valid_wps", "valid_wall")  # the only values that may differ: speeds
    for fit in (res["fit"], ref["fit"]):
        fit["last_valid"] = {k: v for k, v in fit["last_valid"].items() if k not in timing}
    assert res["metrics"] == ref["metrics"] and res["fit"] == ref["fit"] and res["fit"]["updates"] == 8
    from test_fairseq_glue import model_params  # torch.load with fairseq's checkpoint types allowed
    a, b = (model_params(d / "ckpt" / "checkpoint_last.pt") for d in (rdir, ref_dir))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_what_an_interrupted_attempt_keeps(tmp_path):
    """The marker of an interrupted attempt, read by the next one: the steps it finished are kept (a stop in the
    evaluation costs no training); a stopped training continues only with ``resume_training``, the same command
    line and environment and its checkpoint_last.pt there (also once fairseq had ended it: train.sh then trains
    nothing, tests/test_superglue_train.py)."""
    def state(resume=True, train_done=False, stopped_in="train", argv_changed=False, checkpoint=True):
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        grid = parse_grid({**GOOD, "out": str(out), "baseline": "plain", "resume_training": resume}, "g.yaml")
        cond = grid.condition("dp")
        rdir = Path(run_dir(grid, "dp", 1))
        (rdir / "ckpt").mkdir(parents=True)
        if checkpoint:
            (rdir / "ckpt" / "checkpoint_last.pt").write_text("x")
        plan_, env_ = runner_mod.steps(grid, cond, 1), runner_mod.env_overrides(grid, cond, 1)
        records = [{"name": n, "argv": a + (["--changed"] if argv_changed else []), "env": env_, "rc": 0,
                    "wall_s": 5.0, "log": log} for n, a, log, _ in plan_]
        (rdir / "train.out").write_text("done training in 3.0 seconds\n" if train_done else "| epoch 001\n")
        if stopped_in == "train":
            marker = {"steps": [], "interrupted": [{**records[0], "rc": -15}]}
        else:  # training finished, its checkpoint there, the evaluation stopped
            (rdir / "ckpt" / grid.checkpoint).write_text("x")
            marker = {"steps": records[:1], "interrupted": []}
        (rdir / ".run").write_text(json.dumps({"started": "t", "save_dir": str(rdir / "ckpt"), **marker}))
        _, kept, stops = Runner(grid)._resumption(cond, 1)
        return [r["name"] for r in kept], len(stops)

    assert state() == ([], 1)
    assert state(stopped_in="evaluate") == (["train"], 0)
    assert state(stopped_in="evaluate", resume=False) == (["train"], 0)
    assert state(stopped_in="evaluate", argv_changed=True) == ([], 0)
    assert state(resume=False) == ([], 0)
    assert state(train_done=True) == ([], 1)
    assert state(argv_changed=True) == ([], 0)
    assert state(checkpoint=False) == ([], 0)


def test_a_step_added_to_the_grid_runs_alone_on_finished_runs(rte, tmp_path):
    """Runs that finished before the grid had ``alignment`` get it on the next invocation, without training again;
    a finished run whose commands differ from the grid's now is left as it is."""
    grid = {"pipeline": "superglue", "recipe": "cpu-tiny", "data": str(rte / "bin"), "out": str(tmp_path / "o"),
            "metric": "accuracy", "seeds": [1], "flags": ["--max-update", "2"], "eval_flags": ["--cpu"],
            "baseline": "plain", "conditions": [{"name": "plain", "algo": "plain"},
                                                {"name": "dotprod", "algo": "dotprod"}]}
    path = tmp_path / "g.yaml"

    def run(*flags):
        path.write_text(yaml.safe_dump(grid))
        proc = subprocess.run([PY, str(SCRIPT), str(path), *flags], env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        assert proc.returncode == 0, proc.stdout
        return proc.stdout, {c: json.loads((Path(run_dir(load_grid(str(path)), c, 1)) / "result.json").read_text())
                             for c in ("plain", "dotprod")}

    _, first = run()
    assert all(len(r["steps"]) == 2 and "alignment" not in r["metrics"] for r in first.values())
    ckpt = Path(first["plain"]["save_dir"]) / "checkpoint_last.pt"
    stamp = ckpt.stat().st_mtime_ns
    grid["alignment"] = {"pairs": 2, "batch_size": 4}
    dry, _ = run("--dry-run")
    assert "0 runs finished, 2 to run" in dry and "(from step alignment: the earlier ones are kept)" in dry
    assert "train.sh" not in dry and dry.count("grad_alignment.py") == 2
    _, second = run()
    for c, r in second.items():
        assert r["steps"][:2] == first[c]["steps"] and r["steps"][2]["name"] == "alignment", r
        assert r["resumed"]["from"] == "alignment" and r["resumed"]["previous_status"] == "ok"
        assert -1 <= r["metrics"]["alignment"]["mean_cos"] <= 1
    assert ckpt.stat().st_mtime_ns == stamp
    grid["alignment"] = {"pairs": 3, "batch_size": 4}  # a step's command changed: the finished runs stay as they are
    out, third = run()
    assert third == second and "0 runs to do" in out
