"""ROUGE-1/2/L scoring of line-aligned hypotheses and references (the command line is scripts/rouge.py): Google's
rouge-score with the Porter stemmer (per-line F1 x 100; the ROUGE-1.5.5 Perl backend is rouge155.py), input checks
that name the file and line, and the percentile bootstrap of the mean."""
from importlib.metadata import PackageNotFoundError, version

import numpy as np
from rouge_score import rouge_scorer

METRICS = ("rouge1", "rouge2", "rougeL")
DEFAULT_BOOT = 1000
DEFAULT_SEED = 12345
_CHUNK_CELLS = 4_000_000  # bound on the size of one block of bootstrap indices


class RougeInputError(Exception):
    """Bad input file; the message names the file (and line) and is meant for the user."""


def read_lines(path, kind):
    """Lines of a UTF-8 file, trailing newline stripped (only the newline, nothing else)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise RougeInputError(f"cannot read {kind} file {path}: {e.strerror or e}")
    if not data:
        raise RougeInputError(f"{kind} file {path} is empty (0 lines)")
    raw = data.split(b"\n")
    if raw[-1] == b"":  # final newline terminates the last line, it does not start a new one
        raw.pop()
    lines = []
    for i, b in enumerate(raw, 1):
        try:
            lines.append(b.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise RougeInputError(f"{kind} file {path}, line {i}: not valid UTF-8 ({e.reason} at byte {e.start})")
    return lines


def read_pair(hyp_path, ref_path):
    """Hypotheses and references, checked: as many lines in each, no empty reference."""
    hyps, refs = read_lines(hyp_path, "hypothesis"), read_lines(ref_path, "reference")
    if len(hyps) != len(refs):
        raise RougeInputError(f"line count mismatch: hypothesis file {hyp_path} has {len(hyps)} lines, "
                              f"reference file {ref_path} has {len(refs)} lines")
    for i, r in enumerate(refs, 1):
        if not r.strip():
            raise RougeInputError(f"reference file {ref_path}, line {i}: empty reference")
    return hyps, refs


def score_lines(hyps, refs):
    """Per-line F-measures x 100: {metric: float64 array of len(hyps)}."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses vs {len(refs)} references")
    scorer = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)
    out = {m: np.zeros(len(hyps), dtype=np.float64) for m in METRICS}
    for i, (h, r) in enumerate(zip(hyps, refs)):
        s = scorer.score(target=r, prediction=h)
        for m in METRICS:
            out[m][i] = 100.0 * s[m].fmeasure
    return out


def summarize(per_line, n_boot=DEFAULT_BOOT, seed=DEFAULT_SEED):
    """Mean and percentile bootstrap 95% CI per metric. The same resampled line sets are used
    for every metric. Returns {metric: {"f", "ci_low", "ci_high"}}."""
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    n = len(next(iter(per_line.values())))
    if n == 0:
        raise ValueError("no lines to summarize")
    rng = np.random.default_rng(seed)
    stacked = np.stack([per_line[m] for m in METRICS])  # (metrics, n)
    boot = np.empty((len(METRICS), n_boot))
    step = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        idx = rng.integers(0, n, size=(stop - start, n), dtype=np.int32)
        boot[:, start:stop] = stacked[:, idx].mean(axis=2)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=1)
    return {m: {"f": float(stacked[k].mean()), "ci_low": float(lo[k]), "ci_high": float(hi[k])}
            for k, m in enumerate(METRICS)}


def convention(n_lines, n_boot):
    try:
        ver = version("rouge-score")
    except PackageNotFoundError:
        ver = "unknown"
    return (f"google rouge-score {ver}, Porter stemmer, per-line F1 x 100 averaged over {n_lines} lines, "
            f"bootstrap 95% CI ({n_boot} resamples)")
