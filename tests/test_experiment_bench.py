"""scripts/bench_grid.py (fairseq_dpreg/experiment/bench.py): it times the grid's own training step of each
condition, picks the plain reference, reads the seconds per update from fairseq's log, and summarises by hand."""
import json
import os
import subprocess

import pytest
import yaml

from fairseq_dpreg.experiment import bench, runner
from fairseq_dpreg.experiment.grid import GridError, load_grid, parse_grid
from runner_common import GOOD, PY, REPO, env, rte  # noqa: F401 (rte: a fixture)

BENCH_FLAGS = ["--max-update", "24", "--log-interval", "4", "--no-save", "--disable-validation"]


def test_bench_times_the_grids_own_training_step_of_each_condition(tmp_path):
    grid = load_grid(str(REPO / "examples" / "experiments" / "gigaword_warm.yaml"))
    conds = bench.variants(grid)
    assert [c.name for c in conds] == ["plain-lr5e-4", "dotprod-b0.1", "dotprod-b0.3", "dotprod-b0.1-int4",
                                       "reptile-a0.01", "fomaml-a0.01"]
    for c in conds:
        argv, overrides = bench.command(grid, c, 3, tmp_path / "s", 24)
        train = runner.steps(grid, c, 3)[0][1]
        save = os.path.join(runner.run_dir(grid, c.name, 3), "ckpt")
        assert argv == [str(tmp_path / "s") if a == save else a for a in train] + BENCH_FLAGS
        assert overrides == runner.env_overrides(grid, c)
    assert [c.name for c in bench.variants(grid, ["reptile-a0.01"], "plain-lr1e-3")] == ["plain-lr1e-3",
                                                                                          "reptile-a0.01"]
    with pytest.raises(GridError, match="^--only nope: not a condition of"):
        bench.variants(grid, ["nope"])
    with pytest.raises(GridError, match="^--plain nope: not a condition of"):
        bench.variants(grid, ["reptile-a0.01"], "nope")
    two = parse_grid({**GOOD, "conditions": [{"name": "p1", "algo": "plain", "flags": ["--lr", "1e-3"]},
                                             {"name": "p2", "algo": "plain", "flags": ["--lr", "2e-3"]},
                                             {"name": "dp", "algo": "dotprod"}],
                      "baseline": {"best_of": ["p1", "p2"]}})
    with pytest.raises(GridError, match="name it with --plain"):  # dp has no --lr: neither candidate is it
        bench.variants(two)
    two.condition("dp").flags = ["--lr", "2e-3"]
    assert [c.name for c in bench.variants(two)] == ["p2", "dp"]


def test_seconds_per_update_from_update_8_to_the_last(tmp_path):
    log = tmp_path / "train.log"

    def write(records):  # {update: (wall, ups)}; ups None: not logged
        log.write_text("".join(
            f'x | INFO | train_inner | {{"loss": "1", "num_updates": "{u}", "wall": "{w}"'
            + (f', "ups": "{ups}"' if ups is not None else "") + "}\n" for u, (w, ups) in records.items()))
    write({4: (10, None), 8: (20, None), 12: (26, None), 16: (34, None)})
    assert bench.seconds_per_update(log) == pytest.approx((34 - 20) / 8)
    # the windows' times by their ups, off by up to 4 * 0.005 / 0.67**2 + 4 * 0.005 / 0.5**2 = 0.12 s, not 1 s
    write({4: (10, 0.4), 8: (20, 0.4), 12: (26, 0.67), 16: (34, 0.5)})
    assert bench.seconds_per_update(log) == pytest.approx((4 / 0.67 + 4 / 0.5) / 8)
    write({4: (1, 12.5), 8: (1, 12.5), 12: (1, 40.0), 16: (2, 25.0)})  # a small model: the span is a second
    assert bench.seconds_per_update(log) == pytest.approx((4 / 40 + 4 / 25) / 8)
    # slow updates: by ups off by up to 2 * 4 * 0.005 / 0.11**2 = 3.3 s, the wall clock's 1 s is kept
    write({4: (50, 0.11), 8: (90, 0.11), 12: (126, 0.11), 16: (162, 0.11)})
    assert bench.seconds_per_update(log) == pytest.approx((162 - 90) / 8)
    write({4: (1, None), 8: (1, None), 12: (1, None), 16: (1, None)})
    with pytest.raises(bench.BenchError, match="under fairseq's wall-clock second"):
        bench.seconds_per_update(log)
    log.write_text(log.read_text().replace('"num_updates": "8"', '"num_updates": "9"'))
    with pytest.raises(bench.BenchError, match="at update 8"):
        bench.seconds_per_update(log)


def test_summary_and_added_rounds_by_hand():
    earlier = {"plain": {1: 2.0, 2: 2.5}, "dp": {1: 3.0, 2: 4.0}}
    old = json.loads(json.dumps(bench.summary(earlier)))  # as read back from --json: seeds are strings
    assert old["dp"]["ratio_to_plain"] == pytest.approx((1.5 + 1.6) / 2)
    rounds = bench.add_rounds(old, {"plain": {3: 2.2}, "dp": {3: 3.5}})
    s = bench.summary(rounds)
    assert s["plain"]["s_per_update"] == 2.2 and s["plain"]["ratio_to_plain"] == 1.0
    assert s["dp"]["s_per_update"] == 3.5
    assert s["dp"]["ratio_to_plain"] == pytest.approx(3.5 / 2.2)  # the median of 1.5, 1.6, 1.5909
    with pytest.raises(bench.BenchError, match=r"seeds \[2\] were timed already"):
        bench.add_rounds(old, {"plain": {2: 1.0}, "dp": {2: 1.0}})
    with pytest.raises(bench.BenchError, match="time plain, dp, these plain, fo"):
        bench.add_rounds(old, {"plain": {3: 1.0}, "fo": {3: 1.0}})


def test_bench_grid_on_a_small_grid(rte, tmp_path):
    grid = {"pipeline": "superglue", "recipe": "cpu-tiny", "data": str(rte / "bin"), "metric": "accuracy",
            "seeds": [1, 2], "flags": ["--max-update", "2"], "baseline": "plain",
            "conditions": [{"name": "plain", "algo": "plain"},
                           {"name": "dotprod", "algo": "dotprod", "env": {"DPREG_LAMBDA": 0.1}}]}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(grid))
    out = tmp_path / "bench.json"

    def bench_grid(*args):
        return subprocess.run([PY, str(REPO / "scripts" / "bench_grid.py"), str(path), "--updates", "12", *args],
                              env=env(), capture_output=True, text=True)
    p = bench_grid("--seeds", "1", "--json", str(out))
    assert p.returncode == 0, p.stderr
    got = json.loads(out.read_text())
    assert got["grid"] == "g" and got["updates"] == 12 and list(got["variants"]) == ["plain", "dotprod"]
    assert got["variants"]["plain"]["ratio_to_plain"] == 1.0 and got["variants"]["dotprod"]["s_per_update"] > 0
    p = bench_grid("--seeds", "2,1", "--json", str(out), "--add")  # refused before any run
    assert p.returncode == 2 and "seeds [1] were timed already" in p.stderr
    p = bench_grid("--seeds", "1", "--updates", "10")
    assert p.returncode == 2 and "--updates 10: must be a multiple of 4" in p.stderr
