"""Where a sentence-embedding checkpoint keeps what a sentence-pair task needs: linear probes on its frozen
features (``scripts/probe_pair_features.py``).

For each pair (A, B) of a SuperGLUE task with two inputs (RTE, CB, BoolQ, ...), the Hugging Face model
(computed by ``transformers``, not by this project's conversion) gives four feature sets:

- ``joint [CLS]``: the last layer at [CLS] of ``[CLS] A [SEP] B [SEP]`` (what RoBERTa-style fine-tuning reads);
- ``joint mean``: the mean of the last layer over that joint input;
- ``siamese``: ``[u, v, |u-v|, u*v]`` of the sentence embeddings of A and B taken apart (mean pooling, L2
  normalisation: what ``--sentence-pair-encoding siamese`` feeds the classification head);
- ``cosine``: cos(u, v) alone.

Each set trains a logistic regression on the training file, its inverse regularisation strength chosen by
5-fold cross-validation on that file alone (``LogisticRegressionCV``), and is scored on the test file. A
probe near the majority class says the frozen features do not carry the label linearly.
"""
import numpy as np
import torch

from ..superglue.tasks import build_examples

__all__ = ["pair_features", "probe_task"]
CS = (0.01, 0.1, 1.0, 10.0)


@torch.no_grad()
def _encode(model, tok, first, second=None, batch=32, max_length=256):
    cls, mean = [], []
    for i in range(0, len(first), batch):
        enc = tok(first[i:i + batch], second[i:i + batch] if second else None, padding=True, truncation=True,
                  max_length=max_length, return_tensors="pt")
        h = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(h)
        cls.append(h[:, 0])
        mean.append((h * mask).sum(1) / mask.sum(1))
    return torch.cat(cls).numpy(), torch.cat(mean).numpy()


def pair_features(model, tok, pairs, max_length=256):
    """{feature set: array (n, d)} for [(A, B), ...] (see the module's docstring)."""
    first, second = [a for a, _ in pairs], [b for _, b in pairs]
    joint_cls, joint_mean = _encode(model, tok, first, second, max_length=max_length)
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    u, v = norm(_encode(model, tok, first, max_length=max_length)[1]), norm(_encode(model, tok, second,
                                                                                     max_length=max_length)[1])
    return {"joint [CLS]": joint_cls, "joint mean": joint_mean,
            "siamese [u, v, |u-v|, u*v]": np.concatenate([u, v, np.abs(u - v), u * v], axis=1),
            "cosine(u, v)": (u * v).sum(1, keepdims=True)}


def _examples(task, path):
    pairs, labels = [], []
    for ex in build_examples(task, path):
        if len(ex.inputs) != 2 or ex.label is None:
            raise ValueError(f"{path}: {task} examples must be labelled sentence pairs (two inputs)")
        pairs.append(tuple(ex.inputs))
        labels.append(str(ex.label))
    return pairs, labels


def probe_task(hf_dir, task, train_path, test_path, max_length=256, seed=1):
    """{"majority": accuracy of the most frequent training label on test, feature set: test accuracy} (x 100)."""
    import transformers
    from sklearn.linear_model import LogisticRegressionCV

    torch.manual_seed(seed)
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    model = transformers.AutoModel.from_pretrained(hf_dir).eval()
    (tr_pairs, tr_labels), (te_pairs, te_labels) = _examples(task, train_path), _examples(task, test_path)
    classes = sorted(set(tr_labels))
    y_tr = np.array([classes.index(y) for y in tr_labels])
    y_te = np.array([classes.index(y) if y in classes else -1 for y in te_labels])
    majority = int(np.bincount(y_tr).argmax())
    out = {"task": task, "train": str(train_path), "test": str(test_path), "n_train": len(y_tr),
           "n_test": len(y_te), "majority": 100.0 * float((y_te == majority).mean())}
    f_tr, f_te = pair_features(model, tok, tr_pairs, max_length), pair_features(model, tok, te_pairs, max_length)
    for name in f_tr:
        clf = LogisticRegressionCV(Cs=list(CS), cv=5, max_iter=5000).fit(f_tr[name], y_tr)
        out[name] = 100.0 * float((clf.predict(f_te[name]) == y_te).mean())
    return out
