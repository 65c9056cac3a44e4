#!/usr/bin/env python
"""Run a command and report its wall time, CPU time and peak memory, summed over its whole process tree.

    python scripts/peak_memory.py [--json OUT] -- COMMAND [ARGS...]

GNU time's "maximum resident set size" is the largest single process; a pipeline with worker processes
(fairseq-preprocess --workers N) needs the sum. This samples /proc every --interval seconds (Linux only):
the peak of the summed RSS of the command and all its descendants, and the largest single process.
The command's exit status is this script's exit status.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fairseq_dpreg.atomic import write_json_atomic  # noqa: E402

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def _tree_rss_mb(root):
    """(sum, max) RSS in MiB over root and its descendants, from /proc/*/stat (ppid) and /proc/*/statm."""
    children, rss = {}, {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{name}/statm") as f:
                rss[int(name)] = int(f.read().split()[1]) * PAGE_MB
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
        children.setdefault(ppid, []).append(int(name))
    total, largest, todo = 0.0, 0.0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0.0)
        largest = max(largest, rss.get(pid, 0.0))
        todo.extend(children.get(pid, []))
    return total, largest


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--interval", type=float, default=0.2, help="sampling period in seconds (default 0.2)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("no command given (put it after --)")
    start = time.monotonic()
    proc = subprocess.Popen(cmd)
    peak_sum = peak_one = 0.0
    while proc.poll() is None:
        total, largest = _tree_rss_mb(proc.pid)
        peak_sum, peak_one = max(peak_sum, total), max(peak_one, largest)
        time.sleep(args.interval)
    wall = time.monotonic() - start
    usage = os.times()
    out = {"command": cmd, "exit_status": proc.returncode, "wall_s": round(wall, 1),
           "cpu_s": round(usage.children_user + usage.children_system, 1),
           "peak_rss_tree_mib": round(peak_sum, 1), "peak_rss_one_process_mib": round(peak_one, 1),
           "sampling_interval_s": args.interval}
    print(json.dumps(out), file=sys.stderr)
    if args.json:
        write_json_atomic(args.json, out)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
