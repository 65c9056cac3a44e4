"""The experiment runner (scripts/experiment.py, fairseq_dpreg/experiment): a real tiny grid through the SuperGLUE
cpu-tiny recipe (2 conditions x 2 seeds of 2 updates, plus a condition with an invalid flag), interrupted after
its first finished run and resumed; the statistics against values computed by hand on constructed results; the
grid file's errors; the log reader; the runner's signals. A run continued from where it stopped:
test_experiment_resume.py; the squad2 and gigaword paths: test_experiment_pipelines.py."""
import fcntl
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from scipy import stats as st

from fairseq_dpreg.experiment import stats
from fairseq_dpreg.experiment.archive import export_results, import_results
from fairseq_dpreg.experiment.grid import GridError, load_grid, parse_grid
from fairseq_dpreg.experiment.logs import final_fit, read_log
from fairseq_dpreg.experiment.report import write_report
from fairseq_dpreg.experiment import runner as runner_mod
from fairseq_dpreg.experiment.runner import Runner, run_dir
from runner_common import GOOD, PY, SCRIPT, env, events, rte, starts  # noqa: F401 (rte: a fixture)

CONDITIONS = ["plain", "dotprod", "broken"]


@pytest.fixture(scope="module")
def tiny(rte):
    """The grid run by the runner in a subprocess (one job), stopped (SIGTERM) once its first run is finished and
    the second under way, then run again to the end (two jobs). Returns the grid file, the output folder, the
    results there before the rerun, and (exit status, output) of each invocation."""
    out = rte / "out"
    grid = {
        "pipeline": "superglue", "recipe": "cpu-tiny", "data": str(rte / "bin"), "out": str(out),
        "metric": "accuracy", "seeds": [1, 2], "flags": ["--max-update", "2", "--log-interval", "1"],
        "eval_flags": ["--cpu"], "baseline": "plain", "alignment": {"pairs": 2, "batch_size": 4},
        "conditions": [{"name": "plain", "algo": "plain"},
                       {"name": "dotprod", "algo": "dotprod", "env": {"DPREG_LAMBDA": 0.1}},
                       {"name": "broken", "algo": "dotprod", "flags": ["--update-freq", "two"]}],
    }
    path = rte / "tiny.yaml"
    path.write_text(yaml.safe_dump(grid))
    proc = subprocess.Popen([PY, str(SCRIPT), str(path), "--jobs", "1"], env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 150
    while [e["event"] for e in events(out)] != ["start", "ok", "start"]:  # one run done, the next under way
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, f"no run finished in 150 s: {events(out)}"
        time.sleep(0.1)
    time.sleep(1.0)
    stopped = str(out / "runs" / "dotprod" / "seed1")  # this grid's own (other test files run beside this one)
    assert _processes_of(stopped)  # the run under way is seen
    proc.send_signal(signal.SIGTERM)
    first = proc.communicate(timeout=60)[0]
    orphans = _processes_of(stopped)
    files = {(c, s): Path(run_dir(load_grid(str(path)), c, s)) / "result.json" for c in CONDITIONS for s in (1, 2)}
    before = {k: json.loads(f.read_text()) for k, f in files.items() if f.exists()}
    second = subprocess.run([PY, str(SCRIPT), str(path), "--jobs", "2"], env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return path, out, before, (proc.returncode, first), (second.returncode, second.stdout), orphans


def _processes_of(run_folder):
    """The processes whose command line names RUN_FOLDER."""
    def cmdline(proc_dir):
        try:
            return (proc_dir / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return ""
    return [p for p in Path("/proc").glob("[0-9]*") if run_folder in cmdline(p)]


def test_interrupted_grid_resumes_without_rerunning_finished_runs(tiny):
    path, out, before, (rc1, log1), (rc2, log2), orphans = tiny
    assert rc1 == 128 + signal.SIGTERM, log1
    assert orphans == []  # the stop took the training of the run in flight with it
    assert "rerun the same command to resume" in log1
    assert list(before) == [("plain", 1)]
    assert rc2 == 1, log2  # finished, with failed runs (the broken condition)
    evts = events(out)
    grid = load_grid(str(path))
    for c in CONDITIONS:
        for s in (1, 2):
            res = json.loads((Path(run_dir(grid, c, s)) / "result.json").read_text())
            assert res["status"] == ("failed" if c == "broken" else "ok"), res
            if (c, s) in before:  # finished before the stop: never started again, result untouched
                assert starts(evts, c, s) == 1
                assert res == before[(c, s)]
            else:
                assert starts(evts, c, s) >= 1
    interrupted = [(e["condition"], e["seed"]) for e in evts if e["event"] == "interrupted"]
    assert interrupted == [("dotprod", 1)] and starts(evts, "dotprod", 1) == 2  # started again, and finished


def test_real_grid_results_table_and_plots(tiny):
    path, out, *_ = tiny
    grid = load_grid(str(path))
    table = json.loads((out / "results.json").read_text())
    rows = {r["name"]: r for r in table["conditions"]}
    assert rows["plain"]["n"] == rows["dotprod"]["n"] == 2 and rows["plain"]["role"] == "baseline"
    for r in rows.values():
        if r["n"]:
            assert 0 <= r["mean"] <= 100 and r["train_loss"] > 0 and r["valid_loss"] > 0
    assert rows["plain"]["dpreg_cos"] is None and -1 <= rows["dotprod"]["dpreg_cos"] <= 1
    assert rows["plain"]["dpreg_reg_ratio"] is None and rows["dotprod"]["dpreg_reg_ratio"] == pytest.approx(0.1)
    # gradient alignment at each run's checkpoint, on held-out batches paired by seed
    res = {(c, s): json.loads((Path(run_dir(grid, c, s)) / "result.json").read_text()) for c in ("plain", "dotprod")
           for s in (1, 2)}
    for r in res.values():
        a = r["metrics"]["alignment"]
        assert a["pairs"] == 2 and a["subset"] == "valid" and -1 <= a["mean_cos"] <= 1
    for c in ("plain", "dotprod"):
        want = sum(res[(c, s)]["metrics"]["alignment"]["mean_cos"] for s in (1, 2)) / 2
        assert rows[c]["grad_cos"] == pytest.approx(want)
    diff = sum(res[("dotprod", s)]["metrics"]["alignment"]["mean_cos"] -
               res[("plain", s)]["metrics"]["alignment"]["mean_cos"] for s in (1, 2)) / 2
    # the broken condition: failed, counted, listed, never averaged in
    assert rows["broken"]["n"] == 0 and rows["broken"]["failed"] == [1, 2] and rows["broken"]["mean"] is None
    assert [f["condition"] for f in table["failures"]] == ["broken", "broken"]
    assert "--update-freq two" in table["failures"][0]["error"]
    md = (out / "results.md").read_text()
    assert "FAILED broken seed 1" in md and "broken: 0 of 2 seeds finished; failed: 1, 2" in md
    assert "Holm" in md and "MDE" in md
    cmp = {c["condition"]: c for c in table["comparisons"]}
    assert set(cmp) == {"dotprod", "broken"} and cmp["dotprod"]["n"] == 2 and cmp["broken"]["n"] == 0
    assert cmp["dotprod"]["grad_cos_diff"] == pytest.approx(diff) and cmp["broken"]["grad_cos_diff"] is None
    assert table["alignment_vs_metric"]["n"] == 4 and "Held-out alignment (grad cos) against accuracy" in md
    assert "| grad cos |" in md and "| grad cos diff |" in md and "| reg ratio |" in md
    # each run records its commands, exit status, wall time and logs; the seed goes in last
    res = json.loads((Path(run_dir(grid, "dotprod", 2)) / "result.json").read_text())
    train = res["steps"][0]
    assert train["argv"][-2:] == ["--seed", "2"] and train["rc"] == 0 and train["wall_s"] > 0
    assert train["env"]["DPREG_LAMBDA"] == "0.1" and "DPREG_LAMBDA=0.1 bash" in train["command"]
    assert all(os.path.isfile(s["log"]) for s in res["steps"]) and res["steps"][1]["name"] == "evaluate valid"
    align = " ".join(res["steps"][2]["argv"])
    assert res["steps"][2]["name"] == "alignment" and res["steps"][2]["rc"] == 0
    assert "--seed 2 " in align and f"--json {run_dir(grid, 'dotprod', 2)}/alignment.json" in align
    # paired by seed: the same seed gives the same batches (words per batch) in both conditions
    wpb = {(c, s): [r["wpb"] for r in read_log(os.path.join(run_dir(grid, c, s), "ckpt", "train.log"))["inner"]]
           for c in ("plain", "dotprod") for s in (1, 2)}
    assert wpb[("plain", 1)] == wpb[("dotprod", 1)] and wpb[("plain", 2)] == wpb[("dotprod", 2)]
    assert wpb[("plain", 1)] != wpb[("plain", 2)] and len(wpb[("plain", 1)]) == 2
    for name in ("metric.png", "curves.png"):
        data = (out / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_dry_run_prints_commands_and_runs_nothing(tiny, tmp_path):
    path, *_ = tiny
    proc = subprocess.run([PY, str(SCRIPT), str(path), "--dry-run", "--out", str(tmp_path / "o")], env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, proc.stdout
    assert "6 to run" in proc.stdout and "train.sh cpu-tiny dotprod" in proc.stdout
    assert "--max-update 2 --log-interval 1 --update-freq two --seed 2" in proc.stdout
    assert not (tmp_path / "o").exists()


# -- statistics on constructed results -------------------------------------------------------------------------
BASE = {1: 70.0, 2: 72.0, 3: 68.0, 4: 71.0}
DIFFS = {"A": {1: 1.0, 2: 2.0, 3: 4.0, 4: 3.0},   # all seeds
         "B": {1: -1.0, 2: 0.5, 3: -2.0},          # seed 4 not run
         "C": {1: 3.0, 2: 5.0, 3: 4.0}}            # seed 4 failed


FAKE_STEP = """import json, os, sys, time
kind, path, arg, *rest = sys.argv[1:]
if kind == "train":  # the files a fairseq training leaves in SAVE_DIR, then waits for the test's go (if named)
    os.makedirs(path, exist_ok=True)
    for name in ("checkpoint_best.pt", "checkpoint_last.pt", "checkpoint_3_1000.pt", "hyps.test.txt"):
        open(os.path.join(path, name), "w").close()
    while arg and not os.path.exists(arg):
        time.sleep(0.05)
elif arg == "fail":
    sys.exit(3)
else:  # an evaluation: its score says which checkpoint it read
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"accuracy": 70.0 if rest[0].endswith("checkpoint_last.pt") else 60.0}, f)
"""


def fake_steps(monkeypatch, tmp_path, go="", failing=()):
    """The recipes' steps replaced by FAKE_STEP (the runner's own logic is what these tests check): a training
    writes its checkpoints in the run's ckpt/ (its arguments kept, so a changed training command is seen) and
    waits for the file `go` if given; an evaluation scores the checkpoint it is given, and fails for the
    conditions in `failing`."""
    fake = tmp_path / "fake_step.py"
    fake.write_text(FAKE_STEP)
    real_steps = runner_mod.steps

    def steps(grid, cond, seed):
        save = str(Path(run_dir(grid, cond.name, seed)) / "ckpt")
        return [(name, [PY, str(fake), "train", save, str(go), *argv[3:]] if name == "train" else
                 [PY, str(fake), "eval", metrics, "fail" if cond.name in failing else "ok", argv[3]], log, metrics)
                for name, argv, log, metrics in real_steps(grid, cond, seed)]
    monkeypatch.setattr(runner_mod, "steps", steps)


def test_keep_checkpoints_deletes_the_others_once_a_run_finished_ok(tmp_path, monkeypatch):
    """keep_checkpoints: a run that finished ok keeps those checkpoint files (and every other output), the others
    are deleted and listed in its result.json; a failed run keeps all of them (a retry needs them). A step added to
    the grid later still runs on the kept checkpoint."""
    fake_steps(monkeypatch, tmp_path, failing=("dp",))
    raw = {**GOOD, "out": str(tmp_path / "o"), "baseline": "plain", "seeds": [1], "checkpoint": "checkpoint_best.pt",
           "keep_checkpoints": ["checkpoint_best.pt"]}
    grid = parse_grid(raw, "g.yaml")
    Runner(grid, echo=lambda _: None).run()
    ok, failed = (json.loads((Path(run_dir(grid, c, 1)) / "result.json").read_text()) for c in ("plain", "dp"))
    assert ok["status"] == "ok" and failed["status"] == "failed", ok["error"]
    assert sorted(os.listdir(ok["save_dir"])) == ["checkpoint_best.pt", "hyps.test.txt"]
    assert ok["checkpoints_deleted"] == ["checkpoint_3_1000.pt", "checkpoint_last.pt"]
    assert len(os.listdir(failed["save_dir"])) == 4 and "checkpoints_deleted" not in failed
    lines = []
    Runner(parse_grid({**raw, "alignment": {"pairs": 2}}, "g.yaml"), echo=lines.append).dry_run()
    assert "# plain seed 1 -> " in lines[1] and "(from step alignment: the earlier ones are kept)" in lines[1]


def test_rerun_changed_scores_finished_runs_again_on_the_training_they_have(tmp_path, monkeypatch):
    """A finished run whose evaluation changed in the grid (here the checkpoint scored) is left as it is; with
    --rerun-changed it is scored again on its training (not run again), and its result keeps the earlier metrics.
    A finished run whose training command changed is never trained again, and the runner says so."""
    fake_steps(monkeypatch, tmp_path)
    raw = {**GOOD, "out": str(tmp_path / "o"), "baseline": "plain", "seeds": [1], "checkpoint": "checkpoint_best.pt"}
    Runner(parse_grid(raw, "g.yaml"), echo=lambda _: None).run()
    grid = parse_grid({**raw, "checkpoint": "checkpoint_last.pt"}, "g.yaml")
    first = {c: json.loads((Path(run_dir(grid, c, 1)) / "result.json").read_text()) for c in ("plain", "dp")}
    assert all(r["status"] == "ok" and r["metrics"]["valid"]["accuracy"] == 60.0 for r in first.values()), first
    stamp = (Path(first["plain"]["save_dir"]) / "checkpoint_last.pt").stat().st_mtime_ns
    assert Runner(grid).pending() == []  # without the flag: left as they are
    lines = []
    Runner(grid, rerun_changed=True, echo=lines.append).dry_run()
    assert "0 runs finished, 2 to run" in lines[0] and "(from step evaluate valid: the earlier ones are kept)" in lines[1]
    Runner(grid, rerun_changed=True, echo=lambda _: None).run()
    for c, old in first.items():
        new = json.loads((Path(run_dir(grid, c, 1)) / "result.json").read_text())
        assert new["status"] == "ok" and new["metrics"]["valid"]["accuracy"] == 70.0, new
        assert new["steps"][0] == old["steps"][0] and "checkpoint_last.pt" in new["steps"][1]["command"]
        assert new["resumed"]["from"] == "evaluate valid" and new["resumed"]["previous_metrics"] == old["metrics"]
        assert new["started"] == old["started"]
    assert (Path(first["plain"]["save_dir"]) / "checkpoint_last.pt").stat().st_mtime_ns == stamp
    lines = []
    changed = Runner(parse_grid({**raw, "flags": ["--lr", "1e-5"]}, "g.yaml"), rerun_changed=True, echo=lines.append)
    assert changed.pending() == []
    changed.run()
    assert sum("finished with another training command" in line for line in lines) == 2, lines


def t_sf2(t, df):
    """Two-sided p of Student's t, closed forms for 2 and 3 degrees of freedom."""
    if df == 2:
        return 1 - abs(t) / math.sqrt(2 + t * t)
    x = abs(t) / math.sqrt(3)
    return 1 - 2 / math.pi * (x / (1 + x * x) + math.atan(x))


def holm_by_hand(p, m):
    """Holm over m comparisons of which ``p`` ({name: p}) are the smallest: sort, multiply the k-th by m - k + 1,
    running maximum, cap at 1."""
    adj, run = {}, 0.0
    for k, c in enumerate(sorted(p, key=p.get)):
        run = max(run, min(1.0, (m - k) * p[c]))
        adj[c] = run
    return adj


def write_result(grid, cond, seed, status="ok", test=None, valid=None, train_loss=1.0, train_wall=100.0):
    d = Path(run_dir(grid, cond, seed))
    d.mkdir(parents=True)
    res = {"condition": cond, "seed": seed, "status": status, "error": None if status == "ok" else "boom",
           "metrics": {"test": {"accuracy": test}, "valid": {"accuracy": valid}},
           "steps": [{"name": "train", "rc": 0, "wall_s": train_wall}, {"name": "evaluate test", "rc": 0, "wall_s": 9}],
           "fit": {"train_loss": train_loss, "valid_loss": 0.5, "dpreg_cos": None, "last_valid": {}}}
    (d / "result.json").write_text(json.dumps(res))


@pytest.fixture()
def constructed(tmp_path):
    return constructed_grid(tmp_path)


def constructed_grid(tmp_path, more=()):
    """The grid of the hand-computed statistics, with the runs below; ``more``: further dotprod conditions."""
    raw = {"pipeline": "superglue", "recipe": "minilm", "data": str(tmp_path / "data"), "out": str(tmp_path / "o"),
           "metric": {"key": "accuracy", "split": "test"}, "seeds": [1, 2, 3, 4],
           "conditions": [{"name": n, "algo": "plain" if n.startswith("plain") else "dotprod"}
                          for n in ("plain-a", "plain-b", "A", "B", "C", *more)],
           "baseline": {"best_of": ["plain-a", "plain-b"], "select_on": {"split": "valid", "key": "accuracy"}},
           "secondary": [{"against": "A"}]}  # every other dotprod condition (B, C) against A, uncorrected
    grid = parse_grid(raw, "constructed.yaml")
    for s, v in BASE.items():
        write_result(grid, "plain-a", s, test=v, valid=60.0, train_loss=1.0)
        write_result(grid, "plain-b", s, test=v + 10, valid=50.0)  # better on test, worse on valid
    for c, diffs in DIFFS.items():
        for s, d in diffs.items():
            write_result(grid, c, s, test=BASE[s] + d, valid=0.0, train_loss=1.1, train_wall=100.0 + 10 * s)
    write_result(grid, "C", 4, status="failed")
    return grid


def test_statistics_against_hand_computed_values(constructed):
    table, paths = write_report(constructed)
    assert table["baseline"]["selected"] == "plain-a"  # selected on valid, not on the reported test metric
    assert "not on the reported split (test)" in table["baseline"]["note"]
    rows = {r["name"]: r for r in table["conditions"]}
    a = rows["plain-a"]  # 70 72 68 71: mean 70.25, sd sqrt(8.75 / 3)
    sd = math.sqrt(((70 - 70.25) ** 2 + (72 - 70.25) ** 2 + (68 - 70.25) ** 2 + (71 - 70.25) ** 2) / 3)
    assert a["mean"] == pytest.approx(70.25) and a["sd"] == pytest.approx(sd)
    assert a["ci"] == pytest.approx([70.25 - 3.182446305284263 * sd / 2, 70.25 + 3.182446305284263 * sd / 2])
    assert rows["C"]["n"] == 3 and rows["C"]["failed"] == [4] and rows["C"]["mean"] == pytest.approx((73 + 77 + 72) / 3)
    assert rows["B"]["n"] == 3 and rows["B"]["missing"] == [4]

    cmp = {c["condition"]: c for c in table["comparisons"]}
    assert set(cmp) == {"A", "B", "C"}  # the candidates are not compared with the one selected
    # A: differences 1 2 4 3, mean 2.5, sd sqrt(5/3), t = 2.5 / (sd / 2) = 3.873, 3 df
    sd_a = math.sqrt(5 / 3)
    t_a = 2.5 / (sd_a / 2)
    assert cmp["A"]["mean"] == pytest.approx(2.5) and cmp["A"]["sd"] == pytest.approx(sd_a)
    assert cmp["A"]["t"] == pytest.approx(t_a) and cmp["A"]["p"] == pytest.approx(t_sf2(t_a, 3), rel=1e-9)
    assert cmp["A"]["ci"] == pytest.approx([2.5 - 3.182446305284263 * sd_a / 2, 2.5 + 3.182446305284263 * sd_a / 2])
    # B: -1 0.5 -2 (3 pairs: seed 4 not run); C: 3 5 4 (seed 4 failed): mean 4, sd 1, t = 4 sqrt(3)
    mb = -2.5 / 3
    t_b = mb / (math.sqrt(((-1 - mb) ** 2 + (0.5 - mb) ** 2 + (-2 - mb) ** 2) / 2) / math.sqrt(3))
    assert cmp["B"]["n"] == 3 and cmp["B"]["p"] == pytest.approx(t_sf2(t_b, 2), rel=1e-9)
    assert cmp["C"]["n"] == 3 and cmp["C"]["t"] == pytest.approx(4 * math.sqrt(3))
    assert cmp["C"]["p"] == pytest.approx(t_sf2(4 * math.sqrt(3), 2), rel=1e-9)
    adj = holm_by_hand({c: cmp[c]["p"] for c in cmp}, 3)
    for c in cmp:
        assert cmp[c]["p_holm"] == pytest.approx(adj[c])
    # Wilcoxon, exact: A all 4 positive -> 2/16; B ranks 0.5:1 1:2 2:3, W+ = 1 -> 2 * 2/8; C all positive -> 2/8
    assert cmp["A"]["p_wilcoxon"] == pytest.approx(0.125)
    assert cmp["B"]["p_wilcoxon"] == pytest.approx(0.5)
    assert cmp["C"]["p_wilcoxon"] == pytest.approx(0.25)
    # MDE at 80% power, alpha 0.05 / 3, from the sd of the differences
    mde = (st.t.ppf(1 - 0.05 / 6, 3) + st.t.ppf(0.8, 3)) * sd_a / 2
    assert cmp["A"]["mde"] == pytest.approx(mde)
    assert cmp["A"]["train_loss_diff"] == pytest.approx(0.1)
    # training wall time: A's seeds took 110 120 130 140 s against plain-a's 100; C's seeds 1-3 only
    assert rows["A"]["train_min"] == pytest.approx(125 / 60) and rows["plain-a"]["train_min"] == pytest.approx(100 / 60)
    assert cmp["A"]["time_ratio"] == pytest.approx(1.25) and cmp["C"]["time_ratio"] == pytest.approx(1.2)
    # secondary, C against A over the seeds both finished: 2 3 0 (seed 4 failed for C); mean 5/3, sd sqrt(7/3),
    # t = 5 / sqrt(7); not in Holm's m (the three above are corrected over 3, as checked), MDE at alpha 0.05
    sec = {(c["condition"], c["against"]): c for c in table["secondary"]}
    assert list(sec) == [("B", "A"), ("C", "A")]
    c_a = sec[("C", "A")]
    assert c_a["n"] == 3 and c_a["mean"] == pytest.approx(5 / 3) and c_a["sd"] == pytest.approx(math.sqrt(7 / 3))
    assert c_a["t"] == pytest.approx(5 / math.sqrt(7)) and c_a["p"] == pytest.approx(t_sf2(5 / math.sqrt(7), 2))
    assert c_a["p_holm"] is None and c_a["time_ratio"] == pytest.approx(1.0)
    assert c_a["mde"] == pytest.approx((st.t.ppf(0.975, 2) + st.t.ppf(0.8, 2)) * math.sqrt(7 / 3) / math.sqrt(3))
    md = Path(paths[0]).read_text()
    assert "## Secondary comparisons, paired by seed (uncorrected)" in md
    assert "| C | A | 3 | 1: +2.00 / 2: +3.00 / 3: +0.00 | 1.67 |" in md
    assert "| seeds 1-4 |" in md and "| 70.00 / 72.00 / 68.00 / 71.00 | 70.25 |" in md  # plain-a, by seed
    assert "across the 3 comparisons of this table" in md
    assert "| 73.00 / 77.00 / 72.00 / - | 74.00 |" in md  # C: seed 4 failed
    assert "FAILED C seed 4: boom" in md and "B: 3 of 4 seeds finished; not run yet: 4" in md
    for png in paths[2:]:
        assert Path(png).read_bytes()[:4] == b"\x89PNG"


def test_holm_corrects_over_the_planned_comparisons_before_the_grid_is_done(tmp_path):
    """A compared condition without a p yet (here one seed finished: no test) stays in Holm's family as p = 1,
    so that a table read before the grid's end is not corrected over fewer comparisons than planned."""
    grid = constructed_grid(tmp_path, more=["D"])
    write_result(grid, "D", 1, test=99.0, valid=0.0)
    table, paths = write_report(grid)
    cmp = {c["condition"]: c for c in table["comparisons"]}
    assert cmp["D"]["n"] == 1 and cmp["D"]["p"] is None and cmp["D"]["p_holm"] is None
    adj = holm_by_hand({c: cmp[c]["p"] for c in ("A", "B", "C")}, 4)  # multiplied by 4, 3, 2: D (p = 1) is the 4th
    for c in adj:
        assert cmp[c]["p_holm"] == pytest.approx(adj[c])
    sd_a = math.sqrt(5 / 3)
    assert cmp["A"]["mde"] == pytest.approx((st.t.ppf(1 - 0.05 / 8, 3) + st.t.ppf(0.8, 3)) * sd_a / 2)
    assert "across the 4 comparisons of this table" in Path(paths[0]).read_text()


def test_no_reg_ratio_for_reptile_even_where_an_old_log_gave_a_zero(tmp_path):
    raw = {"pipeline": "superglue", "recipe": "minilm", "data": str(tmp_path / "data"), "out": str(tmp_path / "o"),
           "metric": {"key": "accuracy", "split": "test"}, "seeds": [1], "baseline": "plain",
           "conditions": [{"name": "plain", "algo": "plain"}, {"name": "reptile", "algo": "reptile"},
                          {"name": "dotprod", "algo": "dotprod"}]}
    grid = parse_grid(raw, "g.yaml")
    for c in ("plain", "reptile", "dotprod"):
        write_result(grid, c, 1, test=70.0, valid=70.0)
        res_path = Path(run_dir(grid, c, 1)) / "result.json"
        res = json.loads(res_path.read_text())
        res["fit"].update(dpreg_cos=0.3, dpreg_reg_ratio=0.0 if c == "reptile" else 0.1)
        res_path.write_text(json.dumps(res))
    table, _ = write_report(grid)
    rows = {r["name"]: r for r in table["conditions"]}
    assert rows["reptile"]["dpreg_reg_ratio"] is None and rows["reptile"]["dpreg_cos"] == pytest.approx(0.3)
    assert rows["dotprod"]["dpreg_reg_ratio"] == pytest.approx(0.1)


def test_alignment_association_by_hand():
    # x ranks 1..5, y ranks 1 3 2 5 4: sum d^2 = 4, rho = 1 - 6 * 4 / (5 * 24) = 0.8; within groups (means removed)
    # x -1 0 1 -0.5 0.5, y -1 1 0 0.5 -0.5: r = 0.5 / 2.5 = 0.2; both p from t = r sqrt(3 / (1 - r^2)), 3 df
    runs = [("a", 1.0, 1.0), ("a", 2.0, 3.0), ("a", 3.0, 2.0), ("b", 4.0, 5.0), ("b", 5.0, 4.0), ("c", 9.0, 0.0)]
    out = stats.association(runs[:5])
    assert out["n"] == 5 and out["spearman_rho"] == pytest.approx(0.8) and out["within_r"] == pytest.approx(0.2)
    for r, p in ((0.8, out["spearman_p"]), (0.2, out["within_p"])):
        assert p == pytest.approx(2 * st.t.sf(r * math.sqrt(3 / (1 - r * r)), 3))
    assert stats.association(runs)["within_n"] == 5  # a condition with one run has no within-condition point
    assert stats.association(runs[:2])["spearman_rho"] is None  # too few runs
    assert stats.association([(g, 1.0, y) for g, _, y in runs])["spearman_rho"] is None  # constant alignment


def test_holm_by_hand():
    assert stats.holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert stats.holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert stats.holm([0.6, 0.6, 0.6]) == pytest.approx([1.0, 1.0, 1.0])
    # a family of 5 planned comparisons, 2 with a p so far: the missing ones count in m (multiplied by 5, 4)
    assert stats.holm([0.01, None, 0.02], m=5) == pytest.approx([0.05, None, 0.08])
    with pytest.raises(ValueError, match="family of 1"):
        stats.holm([0.01, 0.02], m=1)


def test_report_only_rebuilds_from_finished_runs(constructed, tmp_path):
    grid_file = tmp_path / "g.json"
    grid_file.write_text(json.dumps({
        "pipeline": "superglue", "recipe": "minilm", "data": constructed.data, "out": constructed.out,
        "metric": {"key": "accuracy", "split": "test"}, "seeds": [1, 2, 3, 4],
        "conditions": [{"name": n, "algo": "plain" if n.startswith("plain") else "dotprod"}
                       for n in ("plain-a", "plain-b", "A", "B", "C")],
        "baseline": {"best_of": ["plain-a", "plain-b"], "select_on": {"split": "valid", "key": "accuracy"}}}))
    proc = subprocess.run([PY, str(SCRIPT), str(grid_file), "--report-only"], env=env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 1, proc.stdout  # a failed run in the table
    assert (Path(constructed.out) / "results.json").is_file() and "| A | compared |" in proc.stdout
    assert not (Path(constructed.out) / "events.jsonl").exists()  # nothing was run


def test_kept_runs_rebuild_the_table_and_are_not_run_again(tiny, tmp_path):
    """Every finished run exported as CONDITION-seedS.json and imported into a new output folder: the same table
    (failed runs still failed), nothing left to run, not even the alignment step of runs whose checkpoint is not
    there; then the command line, and a second runner kept off a folder in use."""
    path, out, *_ = tiny
    grid = load_grid(str(path))
    kept = tmp_path / "kept"
    written = export_results(grid, str(kept))
    assert sorted(os.path.basename(w) for w in written) == sorted(f"{c}-seed{s}.json" for c in CONDITIONS for s in (1, 2))
    assert (kept / "broken-seed2.json").read_bytes() == (Path(run_dir(grid, "broken", 2)) / "result.json").read_bytes()
    assert export_results(grid, str(kept)) == []  # unchanged: nothing written again
    (kept / "README.md").write_text("not a run")
    new = load_grid(str(path), out=str(tmp_path / "o"))
    leftover = Path(run_dir(new, "plain", 1))
    (leftover / "ckpt").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="exists but was not made by the runner"):  # not the runner's: left alone
        import_results(new, str(kept))
    assert (leftover / "ckpt").is_dir() and not Path(run_dir(new, "dotprod", 1)).exists()  # nothing written
    (leftover / runner_mod.MARKER).write_text("{}")  # now what an interrupted attempt leaves
    imported, same = import_results(new, str(kept))
    assert len(imported) == 6 and same == [] and not (leftover / "ckpt").exists()
    assert Runner(new).pending() == [] and len(Runner(new, retry_failed=True).pending()) == 2  # broken, retried
    table, _ = write_report(new)
    original = json.loads((out / "results.json").read_text())
    for key in ("conditions", "comparisons"):
        assert json.loads(json.dumps(table[key])) == original[key]
    assert [{**f, "log": None} for f in table["failures"]] == [{**f, "log": None} for f in original["failures"]]
    # a run finished in the folder keeps its own result; the other files are put back
    res = json.loads((kept / "plain-seed2.json").read_text())
    (kept / "plain-seed2.json").write_text(json.dumps({**res, "wall_s": 1.0}))
    os.remove(run_dir(new, "dotprod", 1) + "/result.json")
    assert import_results(new, str(kept)) == ([("dotprod", 1)], [("plain", 2)])
    # the command line: import, report, export in one call
    proc = subprocess.run([PY, str(SCRIPT), str(path), "--out", str(tmp_path / "o2"), "--import-results", str(kept),
                           "--report-only", "--export-results", str(tmp_path / "again")], env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 1, proc.stdout  # the broken condition's failed runs
    assert "6 runs put into" in proc.stdout and "6 run files written" in proc.stdout
    assert (tmp_path / "again" / "plain-seed2.json").read_bytes() == (kept / "plain-seed2.json").read_bytes()
    with open(tmp_path / "o2" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another experiment runner"):
            import_results(load_grid(str(path), out=str(tmp_path / "o2")), str(kept))
    # an imported failed run is the runner's to start again from nothing
    assert Runner(new, retry_failed=True, only=["broken"], seeds=[1], echo=lambda *a: None).run() == 0
    assert json.loads((Path(run_dir(new, "broken", 1)) / "result.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("name, content, message", [
    ("other-seed1.json", None, r"has no run other seed 1 \(conditions: broken, dotprod, plain; seeds: 1, 2\)"),
    ("plain-seed9.json", None, "has no run plain seed 9"),
    ("plain-seed1.json", "{oops", "plain-seed1.json: not JSON"),
    ("plain-seed1.json", {"condition": "dotprod", "seed": 1, "status": "ok"}, "not the result.json of plain seed 1"),
    ("plain-seed1.json", {"condition": "plain", "seed": 1}, "not the result.json of plain seed 1"),
])
def test_kept_runs_that_are_not_the_grids_are_refused_before_anything_is_written(tiny, tmp_path, name, content,
                                                                                 message):
    path, *_ = tiny
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "dotprod-seed2.json").write_text(json.dumps({"condition": "dotprod", "seed": 2, "status": "ok"}))
    (kept / name).write_text(content if isinstance(content, str) else json.dumps(content or {}))
    grid = load_grid(str(path), out=str(tmp_path / "o"))
    with pytest.raises(GridError, match=message):
        import_results(grid, str(kept))
    assert not (tmp_path / "o").exists()
    with pytest.raises(GridError, match="--import-results .*missing: No such file or directory"):
        import_results(grid, str(tmp_path / "missing"))


def test_baseline_selected_on_a_train_log_key(constructed):
    for c in ("plain-a", "plain-b"):
        for s in constructed.seeds:
            path = Path(run_dir(constructed, c, s)) / "result.json"
            res = json.loads(path.read_text())
            res["fit"]["last_valid"] = {"valid_loss": 2.0 if c == "plain-a" else 1.5}
            path.write_text(json.dumps(res))
    constructed.select_on = parse_grid({**GOOD, "baseline": {"best_of": ["plain"], "select_on": {
        "log": "valid_loss", "goal": "min"}}}).select_on
    table, _ = write_report(constructed)
    assert table["baseline"]["selected"] == "plain-b" and "train.log" in table["baseline"]["note"]
    constructed.select_on.goal = "max"
    assert write_report(constructed)[0]["baseline"]["selected"] == "plain-a"
    constructed.select_on.key = "missing_key"  # no candidate has it: no baseline, no comparison
    table, _ = write_report(constructed)
    assert table["baseline"]["selected"] is None and table["comparisons"] == []


def test_gpus_one_job_each_and_one_runner_per_folder(constructed):
    lines = []
    Runner(constructed, gpus=["3", "5"], echo=lines.append, retry_failed=True).dry_run()
    cmds = [x for x in lines if "train.sh" in x]
    assert len(cmds) == 2  # C seed 4 (failed, retried) and B seed 4 (not run)
    assert cmds[0].startswith("CUDA_VISIBLE_DEVICES=3 ") or " CUDA_VISIBLE_DEVICES=3 " in cmds[0]
    assert " CUDA_VISIBLE_DEVICES=5 " in cmds[1] or cmds[1].startswith("CUDA_VISIBLE_DEVICES=5 ")
    with open(os.path.join(constructed.out, ".lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        with pytest.raises(RuntimeError, match="another experiment runner"):
            Runner(constructed).run()
        with open(held.name) as f:
            assert f.read() == "4242\n"  # the holder's pid, not wiped by the runner it kept out


def test_alignment_runs_with_the_recipes_interpreter_and_stops_early_without_torch(tmp_path, monkeypatch):
    """The alignment step takes $PYTHON, else the project's .venv (as examples/common.sh does), not whichever
    python started the runner; one that cannot import torch stops the grid before any run, naming it."""
    raw = {**GOOD, "data": str(tmp_path / "d"), "out": str(tmp_path / "o"), "alignment": {"pairs": 2}}
    grid = parse_grid(raw, "g.yaml")
    cond = grid.conditions[1]
    monkeypatch.setenv("PYTHON", "/opt/some/python")
    assert runner_mod.steps(grid, cond, 1)[-1][1][0] == "/opt/some/python"
    monkeypatch.delenv("PYTHON")
    venv = os.path.join(runner_mod.REPO, ".venv", "bin", "python")
    assert runner_mod.steps(grid, cond, 1)[-1][1][0] == (venv if os.access(venv, os.X_OK) else sys.executable)
    monkeypatch.setenv("PYTHON", sys.executable)  # the test's interpreter has torch and fairseq
    runner_mod.check_python(runner_mod.python())
    bare = tmp_path / "python"
    bare.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n")
    bare.chmod(0o755)
    monkeypatch.setenv("PYTHON", str(bare))
    with pytest.raises(RuntimeError, match=r"alignment: .*/python cannot import torch and fairseq \(ModuleNotF") as e:
        Runner(grid).run()
    assert not os.path.exists(os.path.join(grid.out, "runs"))  # nothing was started
    runner_mod.lock_folder(grid.out).close()  # the lock was let go, while e still holds the error and its frames


# -- the grid file's errors ------------------------------------------------------------------------------------
def test_only_and_seeds_run_a_part_of_the_grid(constructed, tmp_path):
    def todo(**part):
        lines = []
        Runner(constructed, echo=lines.append, retry_failed=True, **part).dry_run()
        return [x.split(" -> ")[0] for x in lines if " -> " in x]
    assert todo() == ["# B seed 4", "# C seed 4"]
    assert todo(only=["B"]) == ["# B seed 4"] and todo(seeds=[1, 2, 3]) == [] and todo(only=["A"], seeds=[4]) == []
    with pytest.raises(GridError, match=r"--only D: not a condition of constructed.yaml \(plain-a, plain-b, A, B, C\)"):
        Runner(constructed, only=["A", "D"])
    with pytest.raises(GridError, match="--seeds 7: not a seed"):
        Runner(constructed, seeds=[1, 7])
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({**GOOD, "out": str(tmp_path / "o")}))
    proc = subprocess.run([PY, str(SCRIPT), str(grid), "--only", "plain,dpx", "--dry-run"], env=env(),
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--only dpx: not a condition" in proc.stderr, proc.stderr
    proc = subprocess.run([PY, str(SCRIPT), str(grid), "--only", "dp", "--seeds", "2", "--dry-run"], env=env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "1 to run" in proc.stdout and "# dp seed 2 ->" in proc.stdout, proc.stdout


@pytest.mark.parametrize("change,message", [
    ({"pipline": "x"}, "g.yaml: pipline: unknown key"),
    ({"pipeline": "glue"}, "pipeline: 'glue' is not one of"),
    ({"seeds": [1, 1]}, "seeds: a seed is listed twice"),
    ({"flags": "--max-update 5 --seed 3"}, "flags: --seed is the runner's"),
    ({"conditions": [{"name": "plain", "algo": "plain"}, {"name": "plain", "algo": "dotprod"}]},
     "the name 'plain' is used twice"),
    ({"conditions": [{"name": "p", "algo": "sgd"}]}, "conditions[0].algo: 'sgd'"),
    ({"baseline": {"best_of": ["plain", "nope"]}}, "baseline.best_of: 'nope' is not a condition"),
    ({"baseline": {"best_of": ["plain"], "select_on": {"log": "valid_loss"}}}, "select_on.goal: give max or min"),
    ({"alignment": {"pairs": 0}}, "alignment.pairs: a whole number >= 1"),
    ({"alignment": {"subsets": "valid"}}, "alignment.subsets: unknown key"),
    ({"secondary": [{"against": "nope"}]}, "secondary[0].against: 'nope' is not a condition"),
    ({"secondary": [{"against": "dp"}]}, "secondary[0].conditions: a non-empty list"),  # no other dotprod
    ({"secondary": [{"against": "plain", "conditions": ["dp", "dp"]}]}, "dp against plain is listed twice"),
    ({"resume_training": "yes"}, "resume_training: true or false (got 'yes')"),
    ({"secondary": [{"against": "plain", "conditions": ["plain"]}]}, "'plain': not a condition other than"),
    ({"keep_checkpoints": ["checkpoint_best.pt"]}, "keep_checkpoints: must keep checkpoint_last.pt (checkpoint:"),
    ({"keep_checkpoints": "checkpoint_last.pt"}, "keep_checkpoints: a list of checkpoint file names"),
])
def test_grid_errors_name_the_file_and_key(change, message):
    with pytest.raises(GridError, match=None) as e:
        parse_grid({**GOOD, **change}, "g.yaml")
    assert message in str(e.value)
    missing = dict(GOOD)
    del missing["seeds"]
    with pytest.raises(GridError, match="g.yaml: seeds: missing"):
        parse_grid(missing, "g.yaml")


def test_log_reader_keeps_one_record_per_update(tmp_path):
    log = tmp_path / "train.log"
    inner = '{"epoch": 1, "loss": "%s", "dpreg_cos": "0.5", "num_updates": "%d"}'
    log.write_text("\n".join([
        "{'_name': None}",  # fairseq's config line: not JSON
        inner % ("2.0", 1), inner % ("2.0", 1),  # --log-file repeats a line
        "2026-01-01 00:00:00 | INFO | train_inner | " + inner % ("1.5", 2),
        inner % ("1.4", 2),  # a resumed run logs update 2 again: the last one wins
        '{"epoch": 1, "valid_loss": "1.2", "valid_accuracy": "55", "valid_num_updates": "2"}',
        '{"epoch": 1, "train_loss": "1.7", "train_dpreg_cos": "0.4", "train_dpreg_reg_ratio": "0.3", '
        '"train_num_updates": "2"}',
    ]) + "\n")
    rec = read_log(str(log))
    assert [(r["updates"], r["loss"]) for r in rec["inner"]] == [(1.0, 2.0), (2.0, 1.4)]
    fit = final_fit(rec)
    assert fit["train_loss"] == 1.7 and fit["valid_loss"] == 1.2 and fit["dpreg_cos"] == 0.4
    assert fit["dpreg_reg_ratio"] == 0.3
    assert fit["last_valid"]["valid_accuracy"] == 55.0 and fit["updates"] == 2.0


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its (gone) parent counts as stopped
        return f.read().split(") ")[-1][0] != "Z"


def test_a_runner_killed_outright_leaves_no_training_behind(tmp_path, repo_root):
    """kill -9 of the runner: the guard of each step stops the step's whole process group."""
    pidfile = tmp_path / "pid"
    step = ["bash", "-c", f"sleep 300 & echo $! > {pidfile}; wait"]  # like train.sh: a shell and its child
    runner = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys; p = subprocess.Popen([sys.executable, '-m', 'fairseq_dpreg.experiment.guard', "
        f"*{step!r}], start_new_session=True); sys.exit(p.wait())")], cwd=repo_root)
    try:
        deadline = time.time() + 60
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.time() < deadline:
            time.sleep(0.1)
        sleeper = int(pidfile.read_text())
        assert _alive(sleeper)
        runner.kill()
        runner.wait()
        deadline = time.time() + 15
        while _alive(sleeper) and time.time() < deadline:
            time.sleep(0.2)
        assert not _alive(sleeper), "the step outlived its runner"
    finally:
        if pidfile.exists() and pidfile.read_text().strip() and _alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
    rc = subprocess.run([sys.executable, "-m", "fairseq_dpreg.experiment.guard", "bash", "-c", "exit 3"],
                        cwd=repo_root).returncode
    assert rc == 3  # the step's own exit status


def test_sigusr1_drains_the_runs_under_way_and_starts_no_more(tmp_path, monkeypatch, capsys):
    """SIGUSR1 while the first of 4 runs trains: that run finishes (training and evaluation), none starts after
    it, the table and the kept runs are written for it, exit status 128+SIGUSR1; the same command then runs the
    other 3 and nothing twice. The recipes' steps are replaced by a small script (the signal handling is the
    runner's own)."""
    go = tmp_path / "go"
    fake_steps(monkeypatch, tmp_path, go=go)
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({**GOOD, "out": str(tmp_path / "o"), "baseline": "plain"}))
    spec = importlib.util.spec_from_file_location("experiment_cli", SCRIPT)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out, kept = tmp_path / "o", tmp_path / "kept"

    def drain_once_started():
        deadline = time.monotonic() + 60
        while not list(out.glob("runs/*/*/ckpt")) and time.monotonic() < deadline:
            time.sleep(0.05)
        pids.append(int((out / ".lock").read_text()))  # the pid the runner wrote in its lock
        os.kill(pids[0], signal.SIGUSR1)
        time.sleep(1.0)  # the handler runs in the main thread, in the runner's wait loop
        go.touch()
    pids = []
    helper = threading.Thread(target=drain_once_started)
    helper.start()
    rc = cli.main([str(grid), "--jobs", "1", "--export-results", str(kept)])
    helper.join()
    printed = capsys.readouterr().out
    assert rc == 128 + signal.SIGUSR1, printed
    assert f"runner pid {os.getpid()} (in {out / '.lock'}: kill -USR1 drains)" in printed
    assert pids == [os.getpid()]
    assert "drained (SIGUSR1): 3 runs not started; rerun the same command" in printed
    assert [str(p.relative_to(out)) for p in out.glob("runs/*/*/ckpt")] == ["runs/plain/seed1/ckpt"]
    assert [(e["event"], e["condition"], e["seed"]) for e in events(out)] == [("start", "plain", 1), ("ok", "plain", 1)]
    assert sorted(p.name for p in kept.iterdir()) == ["plain-seed1.json"]
    assert (out / "results.md").exists()
    assert cli.main([str(grid), "--jobs", "1", "--export-results", str(kept)]) == 0
    evts = events(out)
    assert all(starts(evts, c, s) == 1 for c in ("plain", "dp") for s in (1, 2))
    assert len(list(kept.iterdir())) == 4
