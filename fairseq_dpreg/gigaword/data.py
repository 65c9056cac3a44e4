"""The Gigaword pipeline's data library (examples/gigaword/{prepare,evaluate}.sh through the command line
scripts/gigaword_data.py): find, validate and clean a Rush-format release, SentencePiece / GPT-2 BPE / Hugging
Face codecs, encode the splits, build fairseq-generate input and read its output back in input order, the
lead-N baseline and the Hugging Face dataset export.

Conventions (see examples/gigaword/README.md):
  * cleaning keeps the release conventions: lowercase, every digit written ``#``, single spaces;
  * the unknown-word tokens of the release (``UNK`` in the test set, ``<unk>`` in train/valid) are all
    written as the reserved symbol ``UNK``; it is a SentencePiece user-defined symbol, so it is one piece
    that is never split, and any unknown piece of fairseq (``<unk>``) is written back as ``UNK``.
"""
import json
import re
import shutil
from pathlib import Path

from ..atomic import write_lines_atomic

UNK = "UNK"  # the reserved symbol (a SentencePiece user-defined symbol); everything else is lowercase
UNK_FORMS = {"UNK", "<unk>", "<UNK>", "[UNK]", "\u2047"}  # \u2047 is SentencePiece's own unknown surface
SPM_SPACE = "\u2581"  # SentencePiece's word-boundary marker
SPLITS = ("train", "valid", "test")

# File names a split may have, in the order they are looked for. Each entry: (source, target).
# Rush et al. (2015) release ("sumdata"): train/ and Giga/ subfolders, or everything in one folder.
NAMINGS = {
    "train": [("train.src", "train.tgt"), ("train.article.txt", "train.title.txt"),
              ("train/train.article.txt", "train/train.title.txt")],
    "valid": [("valid.src", "valid.tgt"), ("valid.article.txt", "valid.title.txt"),
              ("valid.article.filter.txt", "valid.title.filter.txt"),
              ("train/valid.article.filter.txt", "train/valid.title.filter.txt")],
    "test": [("test.src", "test.tgt"), ("input.txt", "task1_ref0.txt"),
             ("Giga/input.txt", "Giga/task1_ref0.txt")],
}
REQUIRED_SPLITS = ("train", "valid")


class DataError(Exception):
    """A problem with the user's data; the message names the file (and line)."""


# --------------------------------------------------------------------------------------------------
# cleaning


_DIGIT = re.compile(r"[0-9]")


def clean_line(line):
    """Release conventions: lowercase, digits as ``#``, single spaces; every unknown-word form -> ``UNK``."""
    out = []
    for tok in line.split():
        if tok in UNK_FORMS:
            out.append(UNK)
        else:
            out.append(_DIGIT.sub("#", tok.lower()))
    return " ".join(out)


def postprocess_hypothesis(text):
    """Output side: lowercase, with ``UNK`` for every unknown-word form (fairseq ``<unk>`` included)."""
    out = []
    for tok in text.split():
        out.append(UNK if tok in UNK_FORMS else tok.lower())
    return " ".join(out)


# --------------------------------------------------------------------------------------------------
# finding and validating the input files


def find_split_files(in_dir, split):
    """Return (src_path, tgt_path) of ``split`` in ``in_dir``, or None when it has no file of that split."""
    in_dir = Path(in_dir)
    found = []
    for src, tgt in NAMINGS[split]:
        s, t = in_dir / src, in_dir / tgt
        if s.exists() or t.exists():
            found.append((s, t))
    if not found:
        return None
    if len(found) > 1:
        names = "; ".join(f"{s.relative_to(in_dir)} + {t.relative_to(in_dir)}" for s, t in found)
        raise DataError(f"{in_dir}: the {split} split is given under more than one naming ({names}); keep one")
    s, t = found[0]
    for p, other in ((s, t), (t, s)):
        if not p.exists():
            raise DataError(f"{p}: missing file ({other.name} is there, its pair {p.name} is not)")
    return s, t


def _file_lines(path):
    """(1-based number, bytes without the line end) of every line of a file; a final newline ends a line."""
    with open(path, "rb") as f:
        for i, b in enumerate(f, start=1):
            if b.endswith(b"\n"):
                b = b[:-1]
            if b.endswith(b"\r"):
                b = b[:-1]
            yield i, b


def check_line(path, lineno, b):
    """(text, error): the line decoded, or the error message naming file and line."""
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"{path}:{lineno}: invalid UTF-8 (byte 0x{b[e.start]:02x} at column {e.start + 1})"
    if not s.strip():
        return None, f"{path}:{lineno}: empty line"
    return s, None


def validate_pair(src_path, tgt_path, sink=None, max_errors=10):
    """Stream a source/target pair of files line by line; return the number of lines.

    Checks: both files exist and are not empty, same number of lines, every line valid UTF-8 and not
    empty. ``sink(src, tgt)`` gets the pairs (until the first problem); raises DataError naming file and
    line, with up to ``max_errors`` problems at once."""
    paths = [Path(src_path), Path(tgt_path)]
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: missing file")
        if p.stat().st_size == 0:
            raise DataError(f"{p}: empty file")
    errors = []
    counts = [0] * len(paths)
    iters = [_file_lines(p) for p in paths]
    done = [False] * len(paths)
    while not all(done):
        row = []
        for k, it in enumerate(iters):
            item = None if done[k] else next(it, None)
            if item is None:
                done[k] = True
            else:
                counts[k] = item[0]
            row.append(item)
        if all(x is None for x in row):
            break
        texts = []
        for k, item in enumerate(row):
            if item is None:
                texts.append(None)
                continue
            text, err = check_line(paths[k], *item)
            if err and len(errors) < max_errors:
                errors.append(err)
            texts.append(text)
        if sink is not None and not errors and all(t is not None for t in texts):
            sink(*texts)
    if counts[0] != counts[1]:
        short = 0 if counts[0] < counts[1] else 1
        errors.insert(0, f"{paths[0]} has {counts[0]} lines but {paths[1]} has {counts[1]}: line counts "
                         f"differ (the first line without a partner is line {counts[short] + 1} of "
                         f"{paths[1 - short]})")
    if errors:
        if len(errors) >= max_errors:
            errors.append(f"(stopped after {max_errors} problems)")
        raise DataError("\n".join(errors))
    return counts[0]


# --------------------------------------------------------------------------------------------------
# codecs: SentencePiece (default), GPT-2 BPE (the route of the pretrained BART) and a converted encoder's
# tokenizer (--bpe hf, fairseq_dpreg/gigaword/hf_codec.py: the warm-started MiniLM route)


class SpmCodec:
    name = "spm"

    def __init__(self, model_path):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(model_path))

    def encode(self, clean_text):
        return self.sp.encode(clean_text, out_type=str)

    def encode_batch(self, lines, threads=1):
        return self.sp.encode(lines, out_type=str, num_threads=threads)

    def decode(self, tokens):
        return decode_pieces(tokens)


def decode_pieces(tokens):
    """SentencePiece pieces -> text. Done by hand (the model normalises nothing: rule ``identity``), so a
    token that is no piece of the model (fairseq's ``<unk>``) survives as a word of its own."""
    words = []
    for tok in tokens:
        if tok in UNK_FORMS:
            words.append(" " + UNK + " ")
        else:
            words.append(tok.replace(SPM_SPACE, " "))
    return " ".join("".join(words).split())


class Gpt2Codec:
    """GPT-2 byte-level BPE as BART uses it: tokens are GPT-2 ids written as decimal strings."""

    name = "gpt2"

    def __init__(self, encoder_json, vocab_bpe):
        from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

        self.bpe = get_encoder(str(encoder_json), str(vocab_bpe))

    def encode(self, clean_text):
        return [str(i) for i in self.bpe.encode(clean_text)]

    def encode_batch(self, lines, threads=1):
        return [self.encode(x) for x in lines]

    def decode(self, tokens):
        out, ids = [], []
        for tok in tokens:
            if tok.isdigit():
                ids.append(int(tok))
            else:  # fairseq's <unk> or another special symbol
                if ids:
                    out.append(self.bpe.decode(ids))
                    ids = []
                out.append(" " + UNK + " " if tok in UNK_FORMS else " ")
        if ids:
            out.append(self.bpe.decode(ids))
        return " ".join("".join(out).split())


def encode_file(codec, in_path, out_path, threads=1, chunk=100_000, prefix=()):
    """Encode a text file line by line (in chunks, SentencePiece with ``threads`` threads); ``prefix``
    tokens start every line (the hf codec's [CLS] on the source side)."""
    with open(in_path, encoding="utf-8") as fin, open(out_path, "w", encoding="utf-8") as fout:
        while True:
            lines = [x.rstrip("\n") for _, x in zip(range(chunk), fin)]
            if not lines:
                break
            for toks in codec.encode_batch(lines, threads):
                fout.write(" ".join([*prefix, *toks]) + "\n")


def load_codec(data_bin):
    data_bin = Path(data_bin)
    manifest_path = data_bin / "prepare.json"
    if not manifest_path.is_file():
        raise DataError(f"{manifest_path}: missing (was {data_bin} made by examples/gigaword/prepare.sh?)")
    manifest = json.loads(manifest_path.read_text())
    if manifest["codec"] == "spm":
        return SpmCodec(data_bin / manifest["spm_model"])
    if manifest["codec"] == "gpt2":
        return Gpt2Codec(data_bin / manifest["gpt2_encoder"], data_bin / manifest["gpt2_vocab"])
    if manifest["codec"] == "hf":
        from .hf_codec import HfCodec

        return HfCodec(data_bin / manifest["hf_files"])
    raise DataError(f"{manifest_path}: unknown codec {manifest['codec']!r}")


def train_spm(text_files, model_prefix, vocab_size, model_type, threads):
    """SentencePiece on the cleaned training text (source and target): ``UNK`` is a user-defined
    symbol (one piece, never split); no normalisation (the text is already clean, decoding is exact);
    ``vocab_size`` is an upper bound (hard_vocab_limit off), so small corpora work too."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=",".join(str(f) for f in text_files),
        model_prefix=str(model_prefix),
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        user_defined_symbols=[UNK],
        normalization_rule_name="identity",
        hard_vocab_limit=False,
        input_sentence_size=2_000_000,
        shuffle_input_sentence=True,
        num_threads=threads,
        minloglevel=2,
    )


# --------------------------------------------------------------------------------------------------
# stage: validate + clean + codec + encode (prepare.sh runs fairseq-preprocess afterwards)


def stage(in_dir, out_dir, vocab_size=8000, model_type="unigram", threads=1, bpe="spm",
          gpt2_encoder=None, gpt2_vocab=None, log=print, hf_dir=None):
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise DataError(f"{in_dir}: missing input folder")
    files = {}
    for split in SPLITS:
        pair = find_split_files(in_dir, split)
        if pair is None:
            if split in REQUIRED_SPLITS:
                looked = ", ".join(f"{s} + {t}" for s, t in NAMINGS[split])
                raise DataError(f"{in_dir}: missing {split} files (looked for {looked})")
            continue
        files[split] = pair
    for sub in ("raw", "clean", "pieces"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, (s, t) in files.items():
        names = [out_dir / d / f"{split}.{side}" for d in ("raw", "clean") for side in ("src", "tgt")]
        outs = [open(n, "w", encoding="utf-8") for n in names]
        try:
            def sink(src, tgt):
                outs[0].write(src + "\n")  # raw: as given (the references for scoring)
                outs[1].write(tgt + "\n")
                outs[2].write(clean_line(src) + "\n")
                outs[3].write(clean_line(tgt) + "\n")
            counts[split] = validate_pair(s, t, sink)
        finally:
            for f in outs:
                f.close()
        log(f"[stage] {split}: {counts[split]} pairs from {s} + {t}")

    manifest = {"codec": bpe, "unk_symbol": UNK, "source_lang": "src", "target_lang": "tgt",
                "input_dir": str(in_dir.resolve()),
                "splits": {k: {"pairs": n, "src": str(files[k][0]), "tgt": str(files[k][1])}
                           for k, n in counts.items()}}
    if bpe == "spm":
        log(f"[stage] SentencePiece {model_type}, vocab size <= {vocab_size}, on train src+tgt")
        train_spm([out_dir / "clean" / "train.src", out_dir / "clean" / "train.tgt"],
                  out_dir / "spm", vocab_size, model_type, threads)
        manifest.update(spm_model="spm.model", spm_vocab_size=vocab_size, spm_model_type=model_type)
        codec = SpmCodec(out_dir / "spm.model")
    elif bpe == "gpt2":
        if not (gpt2_encoder and gpt2_vocab):
            raise DataError("--bpe gpt2 needs --gpt2-encoder encoder.json and --gpt2-vocab vocab.bpe")
        (out_dir / "gpt2").mkdir(exist_ok=True)
        for src_file, name in ((gpt2_encoder, "encoder.json"), (gpt2_vocab, "vocab.bpe")):
            if not Path(src_file).is_file():
                raise DataError(f"{src_file}: missing file")
            shutil.copyfile(src_file, out_dir / "gpt2" / name)
        manifest.update(gpt2_encoder="gpt2/encoder.json", gpt2_vocab="gpt2/vocab.bpe")
        codec = Gpt2Codec(out_dir / "gpt2" / "encoder.json", out_dir / "gpt2" / "vocab.bpe")
    elif bpe == "hf":
        from .hf_codec import HfCodec, copy_tokenizer_files

        if not (hf_dir and Path(hf_dir).is_dir()):
            raise DataError(f"--bpe hf needs --hf-dir DIR, a converted encoder folder (got {hf_dir!r})")
        copy_tokenizer_files(hf_dir, out_dir / "hf")  # evaluation decodes with these copies
        manifest.update(hf_files="hf", hf_dir=str(Path(hf_dir).resolve()))
        codec = HfCodec(out_dir / "hf")
    else:
        raise DataError(f"unknown --bpe {bpe!r} (spm, gpt2 or hf)")

    for split in counts:
        for side in ("src", "tgt"):
            encode_file(codec, out_dir / "clean" / f"{split}.{side}", out_dir / "pieces" / f"{split}.{side}", threads,
                        prefix=getattr(codec, "source_prefix", []) if side == "src" else [])
    (out_dir / "prepare.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"[stage] encoded splits: {', '.join(counts)}")
    return manifest


# --------------------------------------------------------------------------------------------------
# evaluation: input for fairseq-generate, and collection of its output


def checkpoint_max_source_positions(checkpoint):
    """max_source_positions of a fairseq checkpoint (model and task config; the smaller), or None."""
    from ..checkpoint_io import load_state

    state = load_state(checkpoint, mmap=True)
    values = []
    cfg = state.get("cfg")
    if cfg is not None:
        for section in ("model", "task"):
            sec = cfg.get(section) if hasattr(cfg, "get") else None
            v = None
            if sec is not None:
                v = sec.get("max_source_positions") if hasattr(sec, "get") else getattr(
                    sec, "max_source_positions", None)
            if isinstance(v, int):
                values.append(v)
    args = state.get("args")
    if args is not None and isinstance(getattr(args, "max_source_positions", None), int):
        values.append(args.max_source_positions)
    return min(values) if values else None


def make_generate_input(codec, raw_src_lines, max_source_tokens):
    """Clean and encode every source line; truncate to ``max_source_tokens`` tokens (the source's eos
    is one more position); an empty line becomes the source ``UNK``, so that no input is empty.
    Returns (token lines, number truncated, number empty)."""
    out, n_trunc, n_empty = [], 0, 0
    for line in raw_src_lines:
        clean = clean_line(line)
        if not clean:
            clean = UNK
            n_empty += 1
        toks = codec.encode(clean)
        if not toks:
            toks = codec.encode(UNK)
        toks = [*getattr(codec, "source_prefix", []), *toks]
        if max_source_tokens is not None and len(toks) > max_source_tokens:
            toks = toks[:max_source_tokens]
            n_trunc += 1
        out.append(" ".join(toks))
    return out, n_trunc, n_empty


class GenerateOutputError(Exception):
    pass


def parse_generate_output(lines):
    """Parse fairseq-generate output. Returns ({id: hypothesis tokens}, {id: source tokens}).

    Raises GenerateOutputError on a duplicated hypothesis id (e.g. --nbest > 1)."""
    hyps, srcs = {}, {}
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith("H-"):
            parts = line.split("\t")
            if len(parts) < 2:
                raise GenerateOutputError(f"malformed hypothesis line: {line!r}")
            idx = int(parts[0][2:])
            toks = parts[2].split() if len(parts) > 2 else []
            if idx in hyps:
                raise GenerateOutputError(f"hypothesis id {idx} appears twice (is --nbest > 1?)")
            hyps[idx] = toks
        elif line.startswith("S-"):
            parts = line.split("\t")
            idx = int(parts[0][2:])
            srcs[idx] = parts[1].split() if len(parts) > 1 else []
    return hyps, srcs


def restore_order(hyps, n_expected, srcs=None, expected_sources=None):
    """Hypotheses in input order (list of token lists), one per input line.

    Fails loudly when an id is missing or out of range; when ``srcs`` (the S- lines) and
    ``expected_sources`` (the token lines given to fairseq) are both there, also checks that S-<i>
    is input line i (fairseq prints ``<unk>`` for a token missing from its dictionary)."""
    missing = [i for i in range(n_expected) if i not in hyps]
    extra = sorted(i for i in hyps if not 0 <= i < n_expected)
    if missing or extra:
        msg = []
        if missing:
            msg.append(f"{len(missing)} of {n_expected} inputs have no hypothesis (ids {_ids(missing)})")
        if extra:
            msg.append(f"unexpected hypothesis ids {_ids(extra)}")
        raise GenerateOutputError("; ".join(msg) + ": fairseq-generate dropped or added inputs")
    if srcs is not None and expected_sources is not None:
        for i in range(n_expected):
            if i not in srcs:
                raise GenerateOutputError(f"no source line S-{i} in the fairseq-generate output")
            exp = expected_sources[i].split() if isinstance(expected_sources[i], str) else expected_sources[i]
            got = srcs[i]
            if len(got) != len(exp) or any(g != e and g != "<unk>" for g, e in zip(got, exp)):
                raise GenerateOutputError(
                    f"S-{i} is not input line {i + 1}: expected {' '.join(exp)[:120]!r}, "
                    f"got {' '.join(got)[:120]!r}")
    return [hyps[i] for i in range(n_expected)]


def _ids(ids, k=10):
    s = ", ".join(str(i) for i in ids[:k])
    return s + (f", ... ({len(ids)} in all)" if len(ids) > k else "")


def collect(generate_lines, codec, expected_sources):
    hyps, srcs = parse_generate_output(generate_lines)
    ordered = restore_order(hyps, len(expected_sources), srcs, expected_sources)
    return [postprocess_hypothesis(codec.decode(toks)) for toks in ordered]


# --------------------------------------------------------------------------------------------------
# lead-N baseline and Hugging Face export


def lead(lines, n=8):
    return [" ".join(line.split()[:n]) for line in lines]


def export_hf(out_dir, name="gigaword"):
    """Write the Hugging Face ``gigaword`` dataset (document -> summary) as {split}.src/.tgt."""
    try:
        import datasets  # only needed here
    except ImportError:
        raise SystemExit("export-hf needs the `datasets` package (pip install datasets)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = datasets.load_dataset(name)
    for hf_split, split in (("train", "train"), ("validation", "valid"), ("test", "test")):
        if hf_split not in ds:
            continue
        src = [" ".join(x.split()) for x in ds[hf_split]["document"]]
        tgt = [" ".join(x.split()) for x in ds[hf_split]["summary"]]
        keep = [i for i in range(len(src)) if src[i] and tgt[i]]
        if len(keep) < len(src):
            print(f"[export-hf] {split}: dropped {len(src) - len(keep)} pairs with an empty side")
        write_lines_atomic(out_dir / f"{split}.src", [src[i] for i in keep])
        write_lines_atomic(out_dir / f"{split}.tgt", [tgt[i] for i in keep])
        print(f"[export-hf] {split}: {len(keep)} pairs -> {out_dir}/{split}.src/.tgt")


def read_lines_lenient(path):
    """Lines of a UTF-8 file; empty lines kept (an evaluation input must keep every line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [x[:-1] if x.endswith("\r") else x for x in lines]
