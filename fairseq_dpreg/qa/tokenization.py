"""Subword tokenization that keeps character offsets, and sliding windows over long contexts.

Three tokenizers, each returning ``(symbols, offsets)``: ``symbols`` are entries of the fairseq dictionary
used by the model, ``offsets[i] = (start, end)`` the characters of the original text that token ``i``
covers (``end`` exclusive, leading/trailing whitespace trimmed; a token made only of whitespace gets an
empty span).

- :class:`SentencePieceTokenizer` (from-scratch models): symbols are SentencePiece pieces; the dictionary
  is written from the SentencePiece vocabulary (:meth:`dictionary_symbols`).
- :class:`GPT2BPETokenizer` (RoBERTa checkpoints): GPT-2 byte-level BPE through fairseq's
  ``gpt2_bpe_utils``; symbols are BPE ids as strings, as in RoBERTa's ``dict.txt``.
- :class:`HFQATokenizer` (converted Hugging Face checkpoints: BERT / MiniLM / ELECTRA WordPiece, RoBERTa
  byte-level BPE): the folder's ``tokenizer.json`` through :class:`fairseq_dpreg.pretrained.tokenizer.HFTokenizer`;
  symbols are Hugging Face ids as strings, as in the folder's ``dict.txt``.

An answer ``[start, end)`` maps to the smallest token span covering it
(:func:`char_span_to_token_span`); a token span maps back to the characters between the first token's
start and the last token's end (:func:`token_span_to_char_span`), so a predicted answer is always an
exact substring of the context (Unicode, spaces and newlines as in the original).
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..pretrained.tokenizer import trim_span as _trim
from .data import QADataError, QAExample

logger = logging.getLogger(__name__)

Span = Tuple[int, int]

BOS, EOS = "<s>", "</s>"  # fairseq Dictionary's bos/eos words (RoBERTa's <s> / </s>)
N_SPECIAL = 4  # <s> question </s> </s> context </s>


def _byte_to_char_index(text: str) -> List[int]:
    """``m[b]`` = index of the character containing UTF-8 byte ``b``; ``m[len(bytes)] = len(text)``."""
    m: List[int] = []
    for i, ch in enumerate(text):
        m.extend([i] * len(ch.encode("utf-8")))
    m.append(len(text))
    return m


def _byte_span_to_chars(bmap: List[int], b_start: int, b_end: int) -> Span:
    """Characters touched by bytes ``[b_start, b_end)``."""
    if b_end <= b_start:
        c = bmap[min(b_start, len(bmap) - 1)]
        return (c, c)
    return (bmap[b_start], bmap[b_end - 1] + 1)


class QATokenizer:
    name = "base"

    def encode(self, text: str) -> Tuple[List[str], List[Span]]:
        raise NotImplementedError

    def settings(self) -> dict:
        return {"tokenizer": self.name}


_PUNCT_BOUNDARY = None


def split_punct(text: str) -> Tuple[str, List[int]]:
    """Put a space before and after every punctuation or symbol character that touches another character.

    Returns the new text and, for each of its characters, the index of the original character it comes
    from (an inserted space points at the character after it). SentencePiece never makes a piece across
    a space, so after this no piece crosses a word/punctuation boundary ("Paris." -> "Paris", ".") and an
    answer that ends before a full stop is recovered exactly. Use it both to train and to apply the model.
    """
    global _PUNCT_BOUNDARY
    if _PUNCT_BOUNDARY is None:
        import regex

        _PUNCT_BOUNDARY = regex.compile(r"(?<=[\p{P}\p{S}])(?=\S)|(?<=\S)(?=[\p{P}\p{S}])")
    pieces, index, last = [], [], 0
    for m in _PUNCT_BOUNDARY.finditer(text):
        p = m.start()
        pieces.append(text[last:p])
        index.extend(range(last, p))
        pieces.append(" ")
        index.append(p)
        last = p
    pieces.append(text[last:])
    index.extend(range(last, len(text)))
    return "".join(pieces), index


class SentencePieceTokenizer(QATokenizer):
    """SentencePiece with offsets from the pieces' recorded spans of the original input.

    With ``punct_split`` (the default; qa_prepare.py trains its models the same way) the text first goes
    through :func:`split_punct`, and offsets are mapped back to the original text.
    """

    name = "sentencepiece"

    def __init__(self, model_path: str, punct_split: bool = True):
        import sentencepiece as spm

        self.model_path = model_path
        self.punct_split = punct_split
        self.sp = spm.SentencePieceProcessor()
        self.sp.Load(model_file=model_path)

    def _proto(self, text: str):
        # sentencepiece >= 0.2.1 calls the structured result 'proto'; 0.1.99-0.2.0 'immutable_proto'
        for kind in ("proto", "immutable_proto"):
            try:
                return self.sp.encode(text, out_type=kind)
            except (ValueError, TypeError, RuntimeError):
                continue
        raise RuntimeError("this sentencepiece version returns no piece offsets (need >= 0.1.99)")

    def encode(self, text: str) -> Tuple[List[str], List[Span]]:
        if not self.punct_split:
            return self._encode(text)
        split, index = split_punct(text)
        symbols, offsets = self._encode(split)
        index.append(len(text))
        mapped = []
        for s, e in offsets:  # spans are trimmed, so their ends are original characters
            mapped.append((index[s], index[s]) if e <= s else (index[s], index[e - 1] + 1))
        return symbols, mapped

    def _encode(self, text: str) -> Tuple[List[str], List[Span]]:
        proto = self._proto(text)
        bmap = _byte_to_char_index(text)
        n_bytes = len(bmap) - 1
        text_bytes = text.encode("utf-8")
        symbols, offsets = [], []
        for piece in proto.pieces:
            b, e, surface = piece.begin, piece.end, piece.surface
            # begin/end are byte offsets in sentencepiece's proto; some wrappers convert them to
            # characters: take whichever reading reproduces the piece's surface string
            if 0 <= b <= e <= n_bytes and text_bytes[b:e].decode("utf-8", "replace") == surface:
                span = _byte_span_to_chars(bmap, b, e)
            elif 0 <= b <= e <= len(text) and text[b:e] == surface:
                span = (b, e)
            else:
                raise RuntimeError(f"sentencepiece offsets {b}:{e} do not match piece surface {surface!r}")
            symbols.append("<unk>" if self.sp.is_unknown(piece.id) else piece.piece)
            offsets.append(_trim(text, *span))
        return symbols, offsets

    def dictionary_symbols(self) -> List[str]:
        """Pieces for fairseq's dict.txt (special pieces left out: fairseq adds its own)."""
        out = []
        for i in range(self.sp.get_piece_size()):
            if self.sp.is_unknown(i) or self.sp.is_control(i):
                continue
            piece = self.sp.id_to_piece(i)
            if piece in ("<s>", "</s>", "<pad>", "<unk>", "<mask>") or not piece or any(c.isspace() for c in piece):
                continue
            out.append(piece)
        return out

    def settings(self) -> dict:
        return {"tokenizer": self.name, "spm_model": self.model_path, "punct_split": self.punct_split}


class GPT2BPETokenizer(QATokenizer):
    """GPT-2 byte-level BPE (RoBERTa). Offsets follow the bytes each BPE token consumes."""

    name = "gpt2"

    def __init__(self, encoder_json: str, vocab_bpe: str):
        from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

        self.encoder_json, self.vocab_bpe = encoder_json, vocab_bpe
        self.bpe = get_encoder(encoder_json, vocab_bpe)

    def encode(self, text: str) -> Tuple[List[str], List[Span]]:
        bpe = self.bpe
        symbols, offsets = [], []
        for m in bpe.re.finditer(bpe.pat, text):
            word = m.group(0)
            word_bytes = word.encode("utf-8")
            bmap = _byte_to_char_index(word)
            encoded = "".join(bpe.byte_encoder[b] for b in word_bytes)
            pos = 0  # one byte-level character per byte
            for tok in bpe.bpe(encoded).split(" "):
                n = len(tok)
                if tok not in bpe.encoder:
                    raise QADataError(f"GPT-2 BPE token {tok!r} not in {self.encoder_json}")
                s, e = _byte_span_to_chars(bmap, pos, pos + n)
                pos += n
                symbols.append(str(bpe.encoder[tok]))
                offsets.append(_trim(text, m.start() + s, m.start() + e))
        return symbols, offsets

    def settings(self) -> dict:
        return {"tokenizer": self.name, "gpt2_encoder_json": self.encoder_json, "gpt2_vocab_bpe": self.vocab_bpe}


class HFQATokenizer(QATokenizer):
    """The tokenizer of a converted Hugging Face folder (``tokenizer.json`` + ``dict.txt``): WordPiece or
    byte-level BPE with the character offsets that ``tokenizers`` tracks through its normalizer."""

    name = "hf"

    def __init__(self, hf_dir: str):
        from ..pretrained.tokenizer import HFTokenizer

        self.hf_dir = hf_dir
        self.hf = HFTokenizer(hf_dir)
        self.dict_path = self.hf.dict_path

    def encode(self, text: str) -> Tuple[List[str], List[Span]]:
        return self.hf.encode(text)

    def settings(self) -> dict:
        return {"tokenizer": self.name, "hf_dir": os.path.abspath(self.hf_dir)}


def build_tokenizer(name: str, spm_model: Optional[str] = None, gpt2_encoder_json: Optional[str] = None,
                    gpt2_vocab_bpe: Optional[str] = None, punct_split: bool = True,
                    hf_dir: Optional[str] = None) -> QATokenizer:
    if name == "sentencepiece":
        if not spm_model:
            raise ValueError("--tokenizer sentencepiece needs a SentencePiece model (--spm-model)")
        return SentencePieceTokenizer(spm_model, punct_split=punct_split)
    if name == "gpt2":
        if not (gpt2_encoder_json and gpt2_vocab_bpe):
            raise ValueError("--tokenizer gpt2 needs --gpt2-encoder-json and --gpt2-vocab-bpe "
                             "(encoder.json and vocab.bpe of the RoBERTa/GPT-2 release)")
        return GPT2BPETokenizer(gpt2_encoder_json, gpt2_vocab_bpe)
    if name == "hf":
        if not hf_dir:
            raise ValueError("--tokenizer hf needs --hf-dir (a converted Hugging Face folder holding "
                             "tokenizer.json and dict.txt, from scripts/convert_hf_encoder.py)")
        return HFQATokenizer(hf_dir)
    raise ValueError(f"unknown tokenizer {name!r} (sentencepiece, gpt2 or hf)")


def train_spm(examples, prefix, vocab_size, punct_split=True):
    """Learn a unigram SentencePiece model on the contexts (each once) and questions of ``examples``; the model
    file's path."""
    import sentencepiece as spm

    def prepare(text):
        return split_punct(text)[0] if punct_split else text

    def sentences():
        seen = set()
        for ex in examples:
            if ex.context_id not in seen:
                seen.add(ex.context_id)
                for line in ex.context.split("\n"):
                    if line.strip():
                        yield prepare(line)
            yield prepare(ex.question)

    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences(), model_prefix=prefix, vocab_size=vocab_size, model_type="unigram",
        character_coverage=0.9995, hard_vocab_limit=False, max_sentence_length=65536,
        input_sentence_size=2_000_000, shuffle_input_sentence=True, minloglevel=2,
        # fairseq's Dictionary adds <s> <pad> </s> <unk> itself; spm keeps its own at ids 0-2
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
    )
    return prefix + ".model"


def char_span_to_token_span(offsets: Sequence[Span], start: int, end: int) -> Optional[Tuple[int, int]]:
    """Smallest token span ``(first, last)`` (inclusive) whose characters cover ``[start, end)``.

    Tokens with an empty span (pure whitespace) are ignored. None if no token overlaps the answer.
    """
    first = last = None
    for i, (s, e) in enumerate(offsets):
        if e <= s:
            continue
        if e > start and s < end:
            if first is None:
                first = i
            last = i
    if first is None:
        return None
    return first, last


def token_span_to_char_span(offsets: Sequence[Span], first: int, last: int) -> Span:
    """Characters from token ``first``'s start to token ``last``'s end (inclusive token indices)."""
    s = offsets[first][0]
    e = max(offsets[i][1] for i in range(first, last + 1))
    return s, max(s, e)


def window_starts(n_tokens: int, max_len: int, stride: int) -> List[Tuple[int, int]]:
    """Windows ``[start, end)`` of at most ``max_len`` tokens, consecutive starts ``stride`` apart, covering
    ``range(n_tokens)``; the last window ends at ``n_tokens``. One empty window for an empty context."""
    if max_len < 1:
        raise ValueError(f"window length must be >= 1, got {max_len}")
    if not 1 <= stride <= max_len:
        raise ValueError(f"doc stride must be between 1 and the window length {max_len}, got {stride}")
    windows = []
    start = 0
    while True:
        end = min(start + max_len, n_tokens)
        windows.append((start, end))
        if end >= n_tokens:
            break
        start += stride
    return windows


@dataclass
class Feature:
    """One window of one question: the model input and where the answer is."""

    qid: str
    example_index: int
    context_id: int
    symbols: List[str]  # <s> question </s> </s> context-window </s>
    ctx_start: int  # position of the first context token in ``symbols``
    ctx_offsets: List[Span]  # character spans of the window's context tokens
    window_start: int = 0  # index of the window's first token among the context's tokens
    start: int = 0  # answer start position in ``symbols`` (0 = no answer in this window)
    end: int = 0

    @property
    def ctx_end(self) -> int:
        return self.ctx_start + len(self.ctx_offsets)


@dataclass
class FeaturizeStats:
    windows: int = 0
    windows_with_answer: int = 0
    questions_truncated: int = 0
    answers_unaligned: List[str] = field(default_factory=list)


def featurize(examples: Sequence[QAExample], tokenizer: QATokenizer, max_seq_len: int = 384,
              doc_stride: int = 128, max_query_len: int = 64, stats: Optional[FeaturizeStats] = None,
              source: str = "") -> List[Feature]:
    """Turn examples into windows of at most ``max_seq_len`` symbols (special tokens included).

    Layout: ``<s> question </s> </s> context </s>`` (RoBERTa's sentence-pair format); position 0 is the
    no-answer target. The question is cut to ``max_query_len`` tokens. A window whose context holds the
    whole first answer gets its token span as target; every other window of the question gets 0/0.
    ``doc_stride`` is the step between consecutive window starts (tokens), so windows overlap by
    ``window_length - doc_stride``.
    """
    stats = stats if stats is not None else FeaturizeStats()
    if max_query_len < 1:
        raise ValueError("max_query_len must be >= 1")
    min_budget = max_seq_len - max_query_len - N_SPECIAL
    if min_budget < 1:
        raise ValueError(f"max_seq_len {max_seq_len} leaves no room for the context after a question of "
                         f"{max_query_len} tokens and {N_SPECIAL} special tokens")
    if not 1 <= doc_stride <= min_budget:
        raise ValueError(f"doc_stride {doc_stride} must be between 1 and max_seq_len - max_query_len - "
                         f"{N_SPECIAL} = {min_budget}, or windows could skip context tokens")
    context_cache: Dict[int, Tuple[List[str], List[Span]]] = {}
    features: List[Feature] = []
    for ei, ex in enumerate(examples):
        if ex.context_id not in context_cache:
            context_cache.clear()  # examples of one context are consecutive: keep one
            context_cache[ex.context_id] = tokenizer.encode(ex.context)
        ctx_symbols, ctx_offsets = context_cache[ex.context_id]
        q_symbols, _ = tokenizer.encode(ex.question)
        if len(q_symbols) > max_query_len:
            q_symbols = q_symbols[:max_query_len]
            stats.questions_truncated += 1
        answer_tokens = None
        if not ex.is_impossible and ex.answers:
            a = ex.answers[0]
            answer_tokens = char_span_to_token_span(ctx_offsets, a.start, a.end)
            if answer_tokens is None:
                raise QADataError(f"{source or 'input'}: question id {ex.qid!r}: answer {a.text!r} at "
                                  f"[{a.start}, {a.end}) covers no context token")
        budget = max_seq_len - len(q_symbols) - N_SPECIAL
        prefix = [BOS] + q_symbols + [EOS, EOS]
        for ws, we in window_starts(len(ctx_symbols), budget, doc_stride):
            f = Feature(qid=ex.qid, example_index=ei, context_id=ex.context_id,
                        symbols=prefix + ctx_symbols[ws:we] + [EOS], ctx_start=len(prefix),
                        ctx_offsets=list(ctx_offsets[ws:we]), window_start=ws)
            if answer_tokens is not None and ws <= answer_tokens[0] and answer_tokens[1] < we:
                f.start = f.ctx_start + answer_tokens[0] - ws
                f.end = f.ctx_start + answer_tokens[1] - ws
                stats.windows_with_answer += 1
            features.append(f)
            stats.windows += 1
    return features
