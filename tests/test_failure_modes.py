"""Failure modes at the fairseq level: interrupted runs, plain <-> plugin checkpoints, exploding radius."""
import shutil
import signal
import subprocess
import sys
import time
import types
import warnings

import pytest
import torch

from test_fairseq_glue import DPREG, PLAIN, TINY, gigaword_bin, train  # noqa: F401  (fixture)

import fairseq_dpreg.glue  # noqa: F401,E402
from fairseq_dpreg.glue.optimizer import new_dpreg_state  # noqa: E402
from fairseq_dpreg.glue.task import DpregTaskMixin  # noqa: E402


def _default_sigint():
    # A shell that starts a job in the background (`make test &`) ignores SIGINT for it, the ignore is
    # inherited down to this training, and Python then never installs its KeyboardInterrupt handler: Ctrl-C
    # must reach the run as it reaches a run started from a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_a_checkpoint_that_loads_and_resumes(gigaword_bin, tmp_path, sig):  # noqa: F811
    cmd = [sys.executable, "-m", "fairseq_cli.train", str(gigaword_bin), "--user-dir", "fairseq_dpreg", *TINY,
           *DPREG, "--save-dir", str(tmp_path), "--save-interval-updates", "1", "--keep-interval-updates", "1",
           "--max-update", "100000"]
    log = tmp_path / "interrupted.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_default_sigint)

    def what_happened():  # a failure here once left nothing to read: say what the run wrote
        return f"the interrupted run (rc {proc.poll()}) wrote:\n{log.read_text(errors='replace')[-3000:]}"

    try:
        last = tmp_path / "checkpoint_last.pt"
        started = time.time()
        while not last.exists() and time.time() < started + 300 and proc.poll() is None:
            time.sleep(0.5)
        assert last.exists(), f"no checkpoint_last.pt after {time.time() - started:.0f} s; {what_happened()}"
        time.sleep(1.0)  # interrupt in the middle of later updates / saves
        proc.send_signal(sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # Seen once with its output (a full-suite run; a failure of this test with SIGINT before it left no
            # message), in none of 32 reruns: the run went on training for minutes after one SIGINT, with no
            # traceback. CPython can lose a KeyboardInterrupt raised inside Python code that C code calls and whose
            # errors it discards; the cause here is not proven. A user presses Ctrl-C again: so does the test, with a
            # warning in the summary, because what it checks is what the interruption leaves behind.
            warnings.warn(f"the run was still training 60 s after one {sig.name}; sent it again")
            proc.send_signal(sig)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"still running 60 s after a second {sig.name}; {what_happened()}")
    finally:  # never leave a run behind that saves a checkpoint every update (it once filled a disk)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, f"the run did not stop on {sig.name}; {what_happened()}"
    state = torch.load(last, map_location="cpu")
    assert "dpreg" in state["last_optimizer_state"]
    done = state["optimizer_history"][-1]["num_updates"]
    out, _ = train(gigaword_bin, *DPREG, "--save-dir", str(tmp_path), "--max-update", str(done + 2))
    assert f"@ {done} updates" in out.stdout, f"the resumed run did not start at update {done}:\n{out.stdout[-3000:]}"


def test_checkpoint_last_is_never_left_half_copied(tmp_path, monkeypatch):
    # fairseq writes checkpoint_E_U.pt atomically, then copies it onto checkpoint_last.pt: a stop during that
    # copy must leave the previous checkpoint_last.pt whole (the run above once failed with EOFError here).
    from fairseq import checkpoint_utils
    new, last = tmp_path / "checkpoint_2_8.pt", tmp_path / "checkpoint_last.pt"
    new.write_bytes(b"N" * 100_000)
    last.write_bytes(b"O" * 90_000)
    real_copy = shutil.copyfileobj

    def stopped_half_way(src, dst, length=0):
        dst.write(src.read(50_000))
        dst.flush()
        raise KeyboardInterrupt

    def stopped_copyfile(src_path, dst_path, **kw):  # the stock PathManager.copy
        with open(src_path, "rb") as src, open(dst_path, "wb") as dst:
            stopped_half_way(src, dst)

    monkeypatch.setattr(shutil, "copyfileobj", stopped_half_way)
    monkeypatch.setattr(shutil, "copyfile", stopped_copyfile)
    with pytest.raises(KeyboardInterrupt):
        checkpoint_utils.PathManager.copy(str(new), str(last), overwrite=True)
    assert last.read_bytes() == b"O" * 90_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_2_8.pt", "checkpoint_last.pt"]
    monkeypatch.setattr(shutil, "copyfileobj", real_copy)
    assert checkpoint_utils.PathManager.copy(str(new), str(last), overwrite=True)
    assert last.read_bytes() == b"N" * 100_000 and new.read_bytes() == b"N" * 100_000


def test_plain_checkpoint_with_the_plugin_and_the_reverse(gigaword_bin, tmp_path):  # noqa: F811
    train(gigaword_bin, *PLAIN, "--save-dir", str(tmp_path / "plain"), "--max-update", "2")
    train(gigaword_bin, *DPREG, "--save-dir", str(tmp_path / "plugin"), "--max-update", "2")
    for src, args in (("plain", DPREG), ("plugin", PLAIN)):
        proc, _ = train(gigaword_bin, *args, "--save-dir", str(tmp_path / src), "--max-update", "4",
                        expect_ok=False)
        assert proc.returncode != 0 and "--reset-optimizer" in proc.stdout  # fairseq's own, clear message
        proc, recs = train(gigaword_bin, *args, "--save-dir", str(tmp_path / src), "--max-update", "4",
                           "--reset-optimizer")
        assert "Loaded checkpoint" in proc.stdout, proc.stdout[-3000:]
        assert len(recs) == 4  # --reset-optimizer restarts the update count; the model weights are loaded


def test_radius_so_large_the_perturbed_loss_explodes(gigaword_bin, tmp_path):  # noqa: F811
    proc, recs = train(gigaword_bin, *DPREG, "--dpreg-weighting", "absolute", "--dpreg-lambda", "0.1",
                       "--dpreg-radius", "1e6", "--max-update", "3", "--save-dir", str(tmp_path))
    assert "dpreg: skipping update" in proc.stdout and "perturbed loss exploded" in proc.stdout
    assert sum(float(r["dpreg_skipped"]) for r in recs) == 3


def _fake_optimizer(weighting):
    return types.SimpleNamespace(dpreg_state=new_dpreg_state(), dpreg={"dpreg_weighting": weighting})


@pytest.mark.parametrize("weighting,ratios,reg_scale,warned", [
    ("absolute", [0.1] * 50 + [0.1 + 0.02 * i for i in range(200)], 1.0, True),  # climbs past 1 (WiC abs 0.003)
    ("absolute", [0.9] * 300, 1.0, False),                                     # strong but below 1
    ("relative", [1.2] * 300, 4.0, False),                                     # beta 0.3 at --dpreg-interval 4
    ("relative", [1.5] * 5, 1.0, True),                                        # beta 1.5 asked for
    ("absolute", [0.1] * 250 + [5.0] * 10, 1.0, False),                       # a short burst, not a trend
])
def test_a_term_outweighing_the_loss_gradient_is_warned_once(caplog, weighting, ratios, reg_scale, warned):
    dp = _fake_optimizer(weighting)
    with caplog.at_level("WARNING", logger="fairseq_dpreg.glue.task"):
        for r in ratios:
            DpregTaskMixin._dpreg_watch(None, dp, {"reg_ratio": r, "cos": 0.1, "loss1": 1.0}, reg_scale)
    said = [m for m in caplog.messages if "outweighs the loss gradient" in m]
    assert len(said) == int(warned), said
    if warned:
        assert ("--dpreg-weighting relative" in said[0]) == (weighting == "absolute")


def test_skips_are_said_at_their_1st_10th_100th_occurrence_and_a_vanished_perturbation_once(caplog):
    dp = _fake_optimizer("relative")
    with caplog.at_level("WARNING", logger="fairseq_dpreg.glue.task"):
        for n in range(150):
            DpregTaskMixin._dpreg_note_skip(dp, "runaway: regularizing term 12 is over 10x the loss gradient 1", n)
            DpregTaskMixin._dpreg_note_skip(dp, "perturbation vanished: radius 0.01 is below ...", n)
    runaway = [m for m in caplog.messages if "runaway" in m]
    assert [m.split(" so far")[0].rsplit("(", 1)[1] for m in runaway] == ["1 such skips", "10 such skips",
                                                                           "100 such skips"]
    assert sum("perturbation vanished" in m for m in caplog.messages) == 1
