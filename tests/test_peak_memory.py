"""scripts/peak_memory.py: the peak is summed over the process tree, and the exit status passes through."""
import json
import subprocess
import sys

SCRIPT = "scripts/peak_memory.py"
# a parent holding ~150 MiB that starts a child holding ~150 MiB at the same time: the tree peak is the sum
TREE = ("import subprocess, sys, time; a = bytearray(150 * 2**20); "
        "subprocess.run([sys.executable, '-c', 'import time; b = bytearray(150 * 2**20); time.sleep(1.5)'])")


def test_peak_is_summed_over_the_tree(repo_root, tmp_path):
    out = tmp_path / "m.json"
    subprocess.run([sys.executable, SCRIPT, "--json", str(out), "--interval", "0.05", "--",
                    sys.executable, "-c", TREE], cwd=repo_root, check=True, capture_output=True)
    m = json.loads(out.read_text())
    assert m["exit_status"] == 0
    assert 140 <= m["peak_rss_one_process_mib"] < 250, m
    assert m["peak_rss_tree_mib"] >= 300, m  # both processes counted at once


def test_exit_status_passes_through(repo_root):
    r = subprocess.run([sys.executable, SCRIPT, "--", sys.executable, "-c", "raise SystemExit(3)"],
                       cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 3
    assert json.loads(r.stderr.strip().splitlines()[-1])["exit_status"] == 3
