"""Held-out splits of files that have no released training/test pair here, stated and reproducible.

- BoolQ (:func:`split_boolq`): the 3,270-example dev file ``val.jsonl`` is split by *passage*, so that no
  passage (several questions share one) is on both sides: a record goes to the test part when the first
  8 hex digits of the SHA-1 of its passage text, read as a number, modulo 10 are below ``test_tenths``
  (default 3: about 30%). Independent of the file's order and of any seed.
- SQuAD 2.0 (:func:`split_squad`): whole articles, by their position in the file: the listed test and
  valid articles, and the rest for training.
"""
import hashlib
import json
import os
from typing import Dict, List, Sequence

from .atomic import write_json_atomic, write_lines_atomic

__all__ = ["SplitError", "passage_bucket", "split_boolq", "split_squad"]


class SplitError(ValueError):
    """Bad input to a split (the message names the file)."""


def passage_bucket(passage: str) -> int:
    return int(hashlib.sha1(passage.encode("utf-8")).hexdigest()[:8], 16) % 10


def split_boolq(in_file: str, out_dir: str, test_tenths: int = 3) -> Dict[str, int]:
    """Write ``out_dir/train.jsonl`` and ``out_dir/val.jsonl`` (the test part, under the name prepare.sh scores);
    returns the counts."""
    if not 1 <= test_tenths <= 9:
        raise SplitError(f"test_tenths must be between 1 and 9, got {test_tenths}")
    parts: Dict[str, List[str]] = {"train": [], "val": []}
    with open(in_file, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                passage = json.loads(line)["passage"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise SplitError(f"{in_file}:{n}: not a BoolQ record with a passage ({e})") from None
            parts["val" if passage_bucket(passage) < test_tenths else "train"].append(line.rstrip("\n"))
    for name, lines in parts.items():
        write_lines_atomic(os.path.join(out_dir, f"{name}.jsonl"), lines)
    return {k: len(v) for k, v in parts.items()}


def split_squad(in_file: str, out_dir: str, test: Sequence[int], valid: Sequence[int] = ()) -> Dict[str, dict]:
    """Write ``train.json``, ``valid.json`` (if ``valid``) and ``test.json`` of whole articles (0-based positions
    in ``in_file``); returns per part the article titles and question counts."""
    with open(in_file, encoding="utf-8") as f:
        try:
            doc = json.load(f)
        except json.JSONDecodeError as e:
            raise SplitError(f"{in_file}: not valid JSON ({e})") from None
    articles = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(articles, list):
        raise SplitError(f"{in_file}: no SQuAD 'data' list of articles")
    n = len(articles)
    for i in list(test) + list(valid):
        if not 0 <= i < n:
            raise SplitError(f"{in_file}: article {i} does not exist (the file has {n}, numbered 0 to {n - 1})")
    if set(test) & set(valid):
        raise SplitError(f"articles {sorted(set(test) & set(valid))} are in both the test and the valid part")
    which = {i: "test" for i in test}
    which.update({i: "valid" for i in valid})
    parts = {"train": [], "valid": [], "test": []}
    for i, a in enumerate(articles):
        parts[which.get(i, "train")].append(a)
    summary = {}
    for name, arts in parts.items():
        if not arts:
            continue
        out = {"version": doc.get("version", "v2.0"), "data": arts}
        write_json_atomic(os.path.join(out_dir, f"{name}.json"), out)
        qs = [q for a in arts for p in a["paragraphs"] for q in p["qas"]]
        summary[name] = {"articles": [a.get("title", "") for a in arts], "questions": len(qs),
                         "unanswerable": sum(bool(q.get("is_impossible")) for q in qs)}
    return summary
