"""Runs one command for the experiment runner and stops it when the runner dies, even by SIGKILL.

``python -m fairseq_dpreg.experiment.guard COMMAND...``, started in a session of its own: the command runs in
the guard's process group, and every second the guard checks that its parent (the runner) is still there.
When it is gone (``kill -9``, an out-of-memory kill, a closed terminal), the guard sends SIGTERM to the
group (train.sh, fairseq, tee and anything they started), SIGKILL after ``GRACE`` seconds, so no training
is left running without a runner that would record it. A SIGTERM or SIGINT to the guard itself (the runner's
own stop sends one to the whole group) is left to the command, whose exit status the guard returns.
"""
import os
import signal
import subprocess
import sys
import time

GRACE = 10.0
POLL = 1.0


def main(argv):
    parent = os.getppid()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda *a: None)  # the group's command gets it too; a handler, not SIG_IGN (inherited)
    child = subprocess.Popen(argv)
    deadline = None
    while True:
        try:
            return child.wait(timeout=POLL)
        except subprocess.TimeoutExpired:
            pass
        if deadline is None and os.getppid() != parent:
            os.killpg(os.getpgrp(), signal.SIGTERM)  # the guard's handler keeps the guard alive
            deadline = time.monotonic() + GRACE
        elif deadline is not None and time.monotonic() > deadline:
            os.killpg(os.getpgrp(), signal.SIGKILL)  # the command, the rest of the group, then the guard itself


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m fairseq_dpreg.experiment.guard COMMAND [ARGS...]")
    sys.exit(main(sys.argv[1:]))
