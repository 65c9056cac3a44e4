"""fairseq's JSON training log (``--log-format json``) as records keyed by update.

Both forms the recipes write are read: ``--log-file`` lines (the bare JSON object) and the console's
``... | INFO | train_inner | {...}`` (gigaword's train.log is a copy of the console). A line is a record when
the text from its first ``{`` parses as a JSON object. fairseq's --log-file can repeat lines, and a resumed
run repeats the updates after its last checkpoint: one record per update is kept, the last one written.
"""
import json
import os

KINDS = ("inner", "train", "valid")


def _kind(rec):
    if "valid_loss" in rec:
        return "valid", "valid_num_updates"
    if "train_loss" in rec:
        return "train", "train_num_updates"
    if "loss" in rec and "num_updates" in rec:
        return "inner", "num_updates"
    return None, None


def read_log(path):
    """{"inner": [...], "train": [...], "valid": [...]}: records of floats (strings that are numbers become
    floats), sorted by update and carrying it as "updates". A missing file gives empty lists."""
    found = {k: {} for k in KINDS}
    if not os.path.isfile(path):
        return {k: [] for k in KINDS}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            start = line.find("{")
            if start < 0:
                continue
            try:
                rec = json.loads(line[start:])
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            kind, upd = _kind(rec)
            if kind is None or upd not in rec:
                continue
            rec = {k: _num(v) for k, v in rec.items()}
            rec["updates"] = rec[upd]
            found[kind][rec["updates"]] = rec
    return {k: [found[k][u] for u in sorted(found[k])] for k in KINDS}


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def final_fit(log):
    """The last values of the training fit: fairseq's last epoch-average train loss (else the last logged
    window's), the last validation loss, the last epoch-average cos(g1, g2) and regularizing term over loss
    gradient (None when not logged), the updates done and the last validation record (the keys a baseline may
    be selected on)."""
    def last(records, key):
        vals = [r[key] for r in records if isinstance(r.get(key), float)]
        return vals[-1] if vals else None

    def last_train(key):  # the last epoch average, else the last logged window
        v = last(log["train"], "train_" + key)
        return v if v is not None else last(log["inner"], key)

    return {
        "train_loss": last_train("loss"),
        "valid_loss": last(log["valid"], "valid_loss"),
        "dpreg_cos": last_train("dpreg_cos"),
        "dpreg_reg_ratio": last_train("dpreg_reg_ratio"),
        "updates": max((r["updates"] for r in log["inner"] + log["train"]), default=None),
        "last_valid": log["valid"][-1] if log["valid"] else {},
    }
