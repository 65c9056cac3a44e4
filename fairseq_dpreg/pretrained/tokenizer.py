"""The tokenizer of a converted Hugging Face folder, for the QA and SuperGLUE preparation (no fairseq needed).

A converted folder (``scripts/convert_hf_encoder.py``) holds ``tokenizer.json`` (the model's Hugging Face
``tokenizers`` file: WordPiece for BERT / MiniLM / ELECTRA, byte-level BPE for RoBERTa) and ``dict.txt``,
whose line ``i`` is the symbol ``"i"``: the Hugging Face token id ``i`` written in decimal, so fairseq
index = 4 + Hugging Face id (as fairseq's RoBERTa ``dict.txt`` holds GPT-2 BPE ids). This module needs only
those two files.

:class:`HFTokenizer` encodes text to those symbols, with character offsets into the original string:

- truncation and padding stored in ``tokenizer.json`` are switched off (MiniLM's file pads and cuts every
  text to 128 tokens), and the model's special tokens ([CLS], [SEP], <s>, ...) are never added: the
  pipelines add fairseq's ``<s>`` / ``</s>``, whose rows carry [CLS] / [SEP];
- text that spells a special token ("[SEP]", "[CLS]", "<mask>", ...) is tokenized as ordinary text
  (``Tokenizer.encode_special_tokens``), as ``transformers`` does with ``split_special_tokens=True``; by
  default ``tokenizers`` would turn it into the special token itself, letting the data forge separators;
- offsets: the ``tokenizers`` Python binding returns *character* offsets into the string it was given (the
  Rust library works in bytes and converts them), so ``text[start:end]`` is what the token covers. Each span
  is trimmed of whitespace (an all-blank token gets an empty span at its end). Characters that the
  normalizer deletes without a token of their own (WordPiece strips combining accents, control and
  zero-width characters: ``"cafe\\u0301"`` gives the token "cafe" over 4 characters) are added to the token
  they touch, so a run of tokens always maps back to whole original characters. Byte-level BPE may split
  one character over several tokens: each of them spans that whole character.
"""

import argparse
import os
import sys
from typing import Iterable, List, Sequence, Tuple

TOKENIZER_FILE = "tokenizer.json"
DICT_FILE = "dict.txt"

Span = Tuple[int, int]


class HFTokenizerError(ValueError):
    """A converted folder that cannot be used: a missing file, or a dictionary that does not fit the tokenizer."""


def check_converted_dir(hf_dir: str) -> Tuple[str, str]:
    """Paths of ``tokenizer.json`` and ``dict.txt`` in ``hf_dir``; a clear error when either is missing."""
    if not os.path.isdir(hf_dir):
        raise HFTokenizerError(f"{hf_dir}: no such folder (expected a converted Hugging Face folder holding "
                               f"{TOKENIZER_FILE} and {DICT_FILE}, from scripts/convert_hf_encoder.py)")
    paths = []
    for name in (TOKENIZER_FILE, DICT_FILE):
        path = os.path.join(hf_dir, name)
        if not os.path.isfile(path):
            raise HFTokenizerError(f"{hf_dir}: missing {name} (a converted Hugging Face folder holds "
                                   f"{TOKENIZER_FILE} and {DICT_FILE}, from scripts/convert_hf_encoder.py)")
        paths.append(path)
    return paths[0], paths[1]


def read_dict_symbols(path: str) -> List[str]:
    """The symbols of a fairseq ``dict.txt`` (``SYMBOL COUNT [#fairseq:overwrite]`` per line), in order."""
    symbols = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if line.endswith(" #fairseq:overwrite"):
                line = line[: -len(" #fairseq:overwrite")]
            parts = line.rsplit(" ", 1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise HFTokenizerError(f"{path}:{n}: not a fairseq dictionary line ('SYMBOL COUNT'): {line!r}")
            symbols.append(parts[0])
    return symbols


def trim_span(text: str, start: int, end: int) -> Span:
    """``[start, end)`` without whitespace at either end; an all-blank span becomes ``(end, end)``."""
    s, e = start, end
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return (end, end) if s == e else (s, e)


def _absorb_dropped(text: str, offsets: List[Span]) -> List[Span]:
    """Extend token spans over adjacent non-blank characters that no token covers (deleted by the normalizer).

    Ends move forward first (a combining accent after its letter joins that letter's token), then starts move
    back (a deleted character after a blank joins the token that follows it). Only uncovered characters are
    taken, so spans never grow into another token's characters.
    """
    covered = bytearray(len(text))
    for s, e in offsets:
        covered[s:e] = b"\x01" * (e - s)
    if all(covered[i] or text[i].isspace() for i in range(len(text))):
        return offsets
    out = list(offsets)
    for i, (s, e) in enumerate(out):
        if e > s:
            while e < len(text) and not covered[e] and not text[e].isspace():
                covered[e] = 1
                e += 1
            out[i] = (s, e)
    for i, (s, e) in enumerate(out):
        if e > s:
            while s > 0 and not covered[s - 1] and not text[s - 1].isspace():
                covered[s - 1] = 1
                s -= 1
            out[i] = (s, e)
    return out


class HFTokenizer:
    """``tokenizer.json`` of a converted folder, encoding to ``dict.txt`` symbols (Hugging Face ids as strings).

    Checks at load time that ``dict.txt`` lists every id the tokenizer can produce, in id order (line ``i`` is
    ``"i"``), so that fairseq index = 4 + Hugging Face id for all of them.
    """

    name = "hf"

    def __init__(self, hf_dir: str):
        try:
            from tokenizers import Tokenizer
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise HFTokenizerError("the Hugging Face 'tokenizers' package is needed to read "
                                   f"{os.path.join(hf_dir, TOKENIZER_FILE)} (pip install tokenizers)") from e
        self.hf_dir = hf_dir
        self.tokenizer_path, self.dict_path = check_converted_dir(hf_dir)
        try:
            tok = Tokenizer.from_file(self.tokenizer_path)
        except Exception as e:  # tokenizers raises its own Exception subclass for unreadable files
            raise HFTokenizerError(f"{self.tokenizer_path}: not a Hugging Face tokenizers file ({e})") from e
        tok.no_truncation()  # a length limit or padding stored with the tokenizer must not apply here
        tok.no_padding()
        if not hasattr(tok, "encode_special_tokens"):
            raise HFTokenizerError("this 'tokenizers' version cannot encode special-token strings as text "
                                   "(Tokenizer.encode_special_tokens, tokenizers >= 0.15): upgrade it")
        tok.encode_special_tokens = True  # "[SEP]" in the text is text, never the separator
        self._tok = tok
        vocab = tok.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1 if vocab else 0

        symbols = read_dict_symbols(self.dict_path)
        self.num_dict_symbols = len(symbols)
        if len(symbols) < self.vocab_size:
            raise HFTokenizerError(
                f"{self.dict_path} has {len(symbols)} symbols but {self.tokenizer_path} produces ids up to "
                f"{self.vocab_size - 1}: dict.txt must list the Hugging Face ids 0..{self.vocab_size - 1} "
                "(line i = 'i 1'), as scripts/convert_hf_encoder.py writes it")
        for i in range(self.vocab_size):
            if symbols[i] != str(i):
                raise HFTokenizerError(
                    f"{self.dict_path}: line {i + 1} holds {symbols[i]!r}, expected {str(i)!r}: dict.txt must "
                    "list the Hugging Face ids in id order (line i = 'i 1'), as scripts/convert_hf_encoder.py "
                    "writes it")

    # -------------------------------------------------------------------------------------- encoding

    def encode(self, text: str) -> Tuple[List[str], List[Span]]:
        """``(symbols, offsets)``: ``dict.txt`` symbols and the character span of ``text`` each token covers."""
        enc = self._tok.encode(text, add_special_tokens=False)
        offsets = [tuple(o) for o in enc.offsets]
        if any(not 0 <= s <= e <= len(text) for s, e in offsets):
            raise RuntimeError(f"tokenizers returned offsets outside the text ({len(text)} characters): "
                               f"{[o for o in offsets if not 0 <= o[0] <= o[1] <= len(text)][:5]}")
        offsets = _absorb_dropped(text, offsets)
        return [str(i) for i in enc.ids], [trim_span(text, s, e) for s, e in offsets]

    def encode_ids(self, text: str) -> List[int]:
        """Hugging Face ids of ``text`` (no special tokens added)."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_lines(self, lines: Sequence[str], batch_size: int = 1000) -> List[str]:
        """Each line as its space-separated symbols (an empty or blank line gives ``""``)."""
        out: List[str] = []
        for i in range(0, len(lines), batch_size):
            for enc in self._tok.encode_batch(list(lines[i:i + batch_size]), add_special_tokens=False):
                out.append(" ".join(map(str, enc.ids)))
        return out

    def settings(self) -> dict:
        return {"tokenizer": self.name, "hf_dir": os.path.abspath(self.hf_dir)}


def encode_files(hf_dir: str, inputs: Sequence[str], outputs: Sequence[str]) -> List[int]:
    """Encode each text file of ``inputs`` (one text per line) into the matching file of ``outputs``: one line
    of space-separated ``dict.txt`` symbols per input line (blank lines stay empty). Returns line counts."""
    if len(inputs) != len(outputs):
        raise HFTokenizerError(f"{len(inputs)} inputs but {len(outputs)} outputs")
    tok = HFTokenizer(hf_dir)
    counts = []
    for src, dst in zip(inputs, outputs):
        with open(src, encoding="utf-8") as f:  # the same line splitting as the binarizer's reads
            lines = [line.rstrip("\n") for line in f]
        encoded = tok.encode_lines(lines)
        with open(dst, "w", encoding="utf-8", newline="\n") as f:
            for line in encoded:
                f.write(line + "\n")
        counts.append(len(encoded))
    return counts


def main(argv: Iterable[str] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fairseq_dpreg.pretrained.tokenizer",
        description="Encode text files, one text per line, into the dict.txt symbols (Hugging Face ids) of a "
                    "converted folder, one line per line (used by examples/superglue/prepare.sh --bpe hf).")
    p.add_argument("--hf-dir", required=True, metavar="DIR", help="converted folder (tokenizer.json, dict.txt)")
    p.add_argument("--inputs", nargs="+", required=True, metavar="FILE", help="text files")
    p.add_argument("--outputs", nargs="+", required=True, metavar="FILE", help="encoded files, one per input")
    args = p.parse_args(argv)
    try:
        encode_files(args.hf_dir, args.inputs, args.outputs)
    except (HFTokenizerError, OSError) as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
