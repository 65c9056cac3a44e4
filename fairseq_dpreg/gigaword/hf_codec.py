"""The ``--bpe hf`` codec of the Gigaword pipeline: a converted encoder's tokenizer (WordPiece for MiniLM/BERT).

Tokens are the converted ``dict.txt`` symbols, i.e. Hugging Face ids written in decimal (fairseq index = 4 + id),
so the data uses the pretrained encoder's vocabulary and embedding rows.

The UNK convention of the other routes holds (data.py): the cleaned text writes every
unknown word of the release as ``UNK``; here it becomes the tokenizer's own unknown token ([UNK], one id,
never the word "unk" that WordPiece would make of it), and on output [UNK] (or fairseq's ``<unk>``, whose row
is [UNK]'s) is written back as ``UNK``. Sources start with the model's [CLS] (fairseq appends ``</s>``, whose
row is [SEP]), the input layout the encoder was trained on. Decoding joins ``##`` continuations to the
previous piece and drops the other special tokens; lowercasing is left to the pipeline's postprocessing.
"""
import json
import os

from ..pretrained.tokenizer import HFTokenizer, HFTokenizerError

UNK = "UNK"
UNK_FORMS = {"UNK", "<unk>", "<UNK>", "[UNK]", "\u2047"}
FILES = ("tokenizer.json", "dict.txt", "conversion.json")


class HfCodec:
    name = "hf"

    def __init__(self, hf_dir):
        self.tok = HFTokenizer(str(hf_dir))
        from tokenizers import Tokenizer

        vocab = Tokenizer.from_file(self.tok.tokenizer_path).get_vocab(with_added_tokens=True)
        self.id_to_piece = {i: p for p, i in vocab.items()}
        specials = {}
        conv = os.path.join(str(hf_dir), "conversion.json")
        if os.path.isfile(conv):
            with open(conv, encoding="utf-8") as f:
                specials = json.load(f).get("special_tokens", {})
        for role, piece in (("unk", "[UNK]"), ("cls", "[CLS]")):
            if specials.get(role) is None:
                specials[role] = vocab.get(piece)
        if specials["unk"] is None:
            raise HFTokenizerError(f"{hf_dir}: the tokenizer has no unknown token (conversion.json special_tokens.unk)")
        self.unk = str(specials["unk"])
        self.source_prefix = [] if specials["cls"] is None else [str(specials["cls"])]
        self.skip = {str(i) for r, i in specials.items() if i is not None and r != "unk"}

    def encode(self, clean_text):
        out, words = [], []

        def flush():
            if words:
                out.extend(self.tok.encode_lines([" ".join(words)])[0].split())
                words.clear()

        for w in clean_text.split():
            if w in UNK_FORMS:
                flush()
                out.append(self.unk)
            else:
                words.append(w)
        flush()
        return out

    def encode_batch(self, lines, threads=1):
        return [self.encode(x) for x in lines]

    def decode(self, tokens):
        words, glue = [], False  # glue: the last word may take a ## continuation
        for t in tokens:
            if t in UNK_FORMS or t == self.unk:
                words.append(UNK)
                glue = False
                continue
            if not t.isdigit() or t in self.skip:  # fairseq's own specials, [CLS], [SEP], [PAD], [MASK]
                glue = False
                continue
            piece = self.id_to_piece.get(int(t), UNK)
            if piece.startswith("##") and len(piece) > 2:
                if glue:
                    words[-1] += piece[2:]
                    continue
                piece = piece[2:]
            words.append(piece)
            glue = piece != UNK
        return " ".join(words)


def copy_tokenizer_files(hf_dir, dest):
    """Copy what decoding needs (tokenizer.json, dict.txt, conversion.json) into ``dest``."""
    import shutil

    os.makedirs(dest, exist_ok=True)
    for name in FILES:
        src = os.path.join(str(hf_dir), name)
        if os.path.isfile(src):
            shutil.copyfile(src, os.path.join(dest, name))
