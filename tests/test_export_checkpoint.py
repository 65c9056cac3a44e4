"""scripts/export_checkpoint.py: a model trained with the plugin, loaded by stock fairseq without it.

Tiny models are trained for two updates with the plugin (translation_dpreg + dpreg_adam; a RoBERTa classifier
with sentence_prediction_dpreg), exported, and loaded in a fresh Python in which importing fairseq_dpreg is
impossible: the outputs equal those of the original checkpoint loaded with the plugin, and so do
fairseq-generate's hypotheses."""
import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fairseq_dpreg.glue  # noqa: F401  (the plugin, for the reference outputs of the original checkpoint)
import fairseq_dpreg.qa.criterion  # noqa: F401  (and the rest of what --user-dir fairseq_dpreg registers)
import fairseq_dpreg.qa.task  # noqa: F401
from fairseq.data import Dictionary, indexed_dataset
from fairseq.models.roberta import RobertaModel
from fairseq.models.transformer import TransformerModel
from fairseq_dpreg.export import ExportError, export_state, main, pickle_globals, stock_names

REPO = Path(__file__).resolve().parents[1]
EXPORT = [sys.executable, str(REPO / "scripts" / "export_checkpoint.py")]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
WORDS = [f"w{i}" for i in range(40)]
SRC_LINES = ["w1 w2 w3 w4 w5", "w9 w8 w7", "w10 w20 w30 w11 w12 w13"]
TR_TINY = ("--arch transformer --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 16 --decoder-embed-dim 16 "
           "--encoder-ffn-embed-dim 32 --decoder-ffn-embed-dim 32 --encoder-attention-heads 2 "
           "--decoder-attention-heads 2 --share-all-embeddings --criterion label_smoothed_cross_entropy "
           "--label-smoothing 0.1 --max-tokens 400").split()
CLS_TINY = ("--encoder-layers 1 --encoder-embed-dim 16 --encoder-ffn-embed-dim 32 --encoder-attention-heads 2 "
            "--max-positions 64 --criterion sentence_prediction --num-classes 2 --init-token 0 "
            "--separator-token 2 --batch-size 8").split()
COMMON = ("--user-dir fairseq_dpreg --optimizer dpreg_adam --lr 1e-3 --max-update 2 --seed 1 --cpu --num-workers 0 "
          "--disable-validation --no-epoch-checkpoints --dpreg-lambda 0.1").split()

# The same code computes the outputs here (original checkpoint, plugin loaded) and in the stock process.
OUTPUTS = '''
import torch

def outputs(hub, kind, lines):
    torch.manual_seed(0)
    hub.eval()
    with torch.no_grad():
        if kind == "translation":
            m, d = hub.models[0], hub.src_dict
            res = {}
            for i, line in enumerate(lines):
                src = d.encode_line(line, add_if_not_exist=False).long().unsqueeze(0)
                prev = torch.cat([src.new_tensor([[d.eos()]]), src[:, :-1]], dim=1)
                res[f"logits{i}"] = m(src, torch.tensor([src.size(1)]), prev)[0]
            res["hypotheses"] = hub.translate(lines, beam=2, max_len_a=0, max_len_b=8)
            return res
        d = hub.task.source_dictionary
        res = {}
        for i, line in enumerate(lines):
            tokens = torch.cat([torch.tensor([0]), d.encode_line(line, add_if_not_exist=False).long()]).unsqueeze(0)
            res[f"features{i}"] = hub.extract_features(tokens)
            res[f"logits{i}"] = hub.predict("sentence_classification_head", tokens, return_logits=True)
        res["model"] = type(hub.model)  # (popped before comparing)
        return res
'''

# Run in a fresh Python: the plugin cannot be imported there (a finder refuses it), no --user-dir is given.
STOCK = OUTPUTS + '''
import argparse, json, os, sys
import torch

class NoPlugin:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "fairseq_dpreg":
            raise ImportError("the plugin must not be imported here")

sys.meta_path.insert(0, NoPlugin())
kind, data, result_file, original = sys.argv[1:5]
exported = sys.argv[5:]
if kind == "translation":
    from fairseq.models.transformer import TransformerModel as Hub
else:
    from fairseq.models.roberta import RobertaModel as Hub
from fairseq import checkpoint_utils

job = json.loads(sys.stdin.read())
lines = job["lines"]
result = {}
for path in exported:
    extra = {"bpe": None} if kind != "translation" else {}
    hub = Hub.from_pretrained(os.path.dirname(path), checkpoint_file=os.path.basename(path),
                              data_name_or_path=data, **extra)
    result[path] = outputs(hub, kind, lines)
    result[path].pop("model", None)
    torch.load(path, weights_only=True)  # the file itself, as any torch user would read it
errors = []
try:  # the original checkpoint, stock fairseq as it is
    checkpoint_utils.load_checkpoint_to_cpu(original)
    errors.append("")
except Exception as e:
    errors.append(f"{type(e).__name__}: {e}")
try:  # the same with argparse.Namespace allow-listed (what torch < 2.6 or the plugin's allow-list would do)
    with torch.serialization.safe_globals([argparse.Namespace]):
        Hub.from_pretrained(os.path.dirname(original), checkpoint_file=os.path.basename(original),
                            data_name_or_path=data, **({"bpe": None} if kind != "translation" else {}))
    errors.append("")
except Exception as e:
    errors.append(f"{type(e).__name__}: {e}")
result["errors"] = errors
if job["generate"]:  # what the fairseq-generate console script runs, given these arguments
    from fairseq_cli.generate import cli_main
    sys.argv = ["fairseq-generate", *job["generate"]]
    cli_main()
assert "fairseq_dpreg" not in sys.modules and not any(m.startswith("fairseq_dpreg.") for m in sys.modules)
torch.save(result, result_file)
'''


def run(cmd, cwd=REPO, stdin=None):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=ENV, input=stdin, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def train(data, save_dir, *args):
    proc = run([sys.executable, "-m", "fairseq_cli.train", data, "--save-dir", save_dir, *COMMON, *args])
    assert proc.returncode == 0, proc.stdout[-4000:]
    return save_dir / "checkpoint_last.pt"


def binarize(lines, dictionary, prefix):
    builder = indexed_dataset.make_builder(f"{prefix}.bin", "mmap", vocab_size=len(dictionary))
    for line in lines:
        builder.add_item(dictionary.encode_line(line, add_if_not_exist=False).long())
    builder.finalize(f"{prefix}.idx")


def dictionary(symbols, path):
    d = Dictionary()
    for s in symbols:
        d.add_symbol(s)
    path.parent.mkdir(parents=True, exist_ok=True)
    d.save(str(path))
    return d


def export(src, dst, *flags):
    """The command line, in its own process."""
    return run([*EXPORT, src, dst, *flags])


def refused(capsys, *args):
    """main() in this process, for a run that must stop: (exit status, stderr)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    return e.value.code, capsys.readouterr().err


def stock_outputs(tmp, kind, data, original, *exported, generate=None):
    """Outputs of the exported files, and the errors of the original, in a Python without the plugin; then
    fairseq-generate with the arguments ``generate``, if given."""
    script = tmp / "stock.py"
    script.write_text(STOCK)
    proc = run([sys.executable, script, kind, data, tmp / "stock.pt", original, *exported], cwd=tmp,
               stdin=json.dumps({"lines": SRC_LINES, "generate": generate}))
    assert proc.returncode == 0, proc.stdout[-4000:]
    return torch.load(tmp / "stock.pt", weights_only=True)


def plugin_outputs(hub_cls, path, data, kind, **kwargs):
    """The outputs of ``path`` loaded here, with the plugin, one thread like the stock process."""
    ns = {}
    exec(OUTPUTS, ns)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hub = hub_cls.from_pretrained(str(path.parent), checkpoint_file=path.name, data_name_or_path=str(data),
                                      **kwargs)
        return ns["outputs"](hub, kind, SRC_LINES)
    finally:
        torch.set_num_threads(threads)


def generate_here(monkeypatch, *args):
    """fairseq-generate in this process (the plugin is loaded here), one thread like the stock process."""
    from fairseq_cli.generate import cli_main

    monkeypatch.setattr(sys, "argv", ["fairseq-generate", *args])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cli_main()
    finally:
        torch.set_num_threads(threads)


def plugin_traces(obj, where="cfg"):
    """Every place in a config that still names the plugin: dpreg_* keys, *_dpreg / dpreg_* values, its folder."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if str(k).startswith("dpreg_"):
                found.append(f"{where}.{k}")
            found += plugin_traces(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found += plugin_traces(v, f"{where}[{i}]")
    elif isinstance(obj, str) and (obj.endswith("_dpreg") or obj.startswith("dpreg_") or obj.endswith("fairseq_dpreg")):
        found.append(f"{where}={obj}")
    return found


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert a[k].shape == b[k].shape and torch.allclose(a[k], b[k], rtol=0, atol=1e-6), k
        else:
            assert a[k] == b[k], k


@pytest.fixture(scope="module")
def translation(tmp_path_factory):
    """A transformer trained 2 updates with translation_dpreg + dpreg_adam on a generated copy-like corpus."""
    root = tmp_path_factory.mktemp("export_tr")
    data = root / "bin"
    d = dictionary(WORDS, data / "dict.src.txt")
    d.save(str(data / "dict.tgt.txt"))
    rng = random.Random(1)
    for split, n in (("train", 120), ("test", 12)):
        src = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]
        tgt = [" ".join(s.split()[:3][::-1]) for s in src]
        binarize(src, d, data / f"{split}.src-tgt.src")
        binarize(tgt, d, data / f"{split}.src-tgt.tgt")
    ckpt = train(data, root / "ck", "--task", "translation_dpreg", *TR_TINY)
    return root, data, ckpt


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny RoBERTa sentence classifier (roberta_base) trained 2 updates with sentence_prediction_dpreg."""
    root = tmp_path_factory.mktemp("export_cls")
    data = root / "bin"
    d = dictionary(WORDS, data / "input0" / "dict.txt")
    labels = dictionary(["0", "1"], data / "label" / "dict.txt")
    rng = random.Random(2)
    sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(48)]
    binarize(sents, d, data / "input0" / "train")
    binarize([str(int("w1" in s.split())) for s in sents], labels, data / "label" / "train")
    ckpt = train(data, root / "ck", "--task", "sentence_prediction_dpreg", "--arch", "roberta_base", *CLS_TINY)
    return root, data, ckpt


def test_translation_model_loads_and_generates_without_the_plugin(translation, tmp_path, monkeypatch, capsys):
    root, data, ckpt = translation
    out, small = tmp_path / "release" / "model.pt", tmp_path / "release" / "small.pt"
    assert main([str(ckpt), str(out)]) == 0
    assert "task translation, arch transformer, optimizer adam, optimizer state kept" in capsys.readouterr().out
    assert main([str(ckpt), str(small), "--no-optimizer-state"]) == 0
    # nothing but torch's own rebuild functions and OrderedDict left in the pickles (the original holds a
    # Namespace). (This process has the plugin, which allow-lists Namespace: its torch.load proves nothing.)
    assert "argparse.Namespace" in pickle_globals(ckpt)
    for path in (out, small):
        assert all(g == "collections.OrderedDict" or g.startswith("torch.") for g in pickle_globals(path))
    print(f"sizes: IN {ckpt.stat().st_size}, OUT {out.stat().st_size}, --no-optimizer-state {small.stat().st_size}")
    assert small.stat().st_size < 0.6 * out.stat().st_size
    state = torch.load(out, weights_only=True)
    assert state["cfg"]["task"]["_name"] == "translation" and state["cfg"]["optimizer"]["_name"] == "adam"
    assert state["cfg"]["common"]["user_dir"] is None and state["cfg"]["model"]["user_dir"] is None
    assert not plugin_traces(state["cfg"])
    assert "dpreg" not in state["last_optimizer_state"]
    assert state["optimizer_history"][-1]["optimizer_name"] == "FairseqAdam"
    assert not [m for meters in state["extra_state"]["metrics"].values() for m in meters if "dpreg" in m[1]]
    assert "last_optimizer_state" not in torch.load(small, weights_only=True)

    gen = [str(data), "--gen-subset", "test", "--beam", "2", "--max-len-a", "0", "--max-len-b", "8",
           "--batch-size", "4"]
    ref = plugin_outputs(TransformerModel, ckpt, data, "translation")
    generate_here(monkeypatch, *gen, "--user-dir", str(REPO / "fairseq_dpreg"), "--path", str(ckpt),
                  "--results-path", str(tmp_path / "with_plugin"))
    got = stock_outputs(tmp_path, "translation", data, ckpt, out, small,
                        generate=[*gen, "--path", str(out), "--results-path", str(tmp_path / "stock")])
    assert_same(ref, got[str(out)])
    assert_same(ref, got[str(small)])
    # the bug being fixed: stock fairseq on the plugin's checkpoint
    assert "Unsupported global: GLOBAL argparse.Namespace" in got["errors"][0]
    assert "Could not infer task type from {'_name': 'translation_dpreg'" in got["errors"][1]
    # fairseq-generate: the same hypotheses and scores (fairseq-generate itself drops a few of the 12 inputs)
    hyps = [sorted(line for line in (tmp_path / d / "generate-test.txt").read_text().splitlines()
                   if line[:2] in ("H-", "P-")) for d in ("with_plugin", "stock")]
    assert len(hyps[0]) >= 16 and hyps[0] == hyps[1]


def test_classifier_loads_without_the_plugin(classifier, tmp_path):
    root, data, ckpt = classifier
    # the plugin's hf_encoder at stock layer-norm eps: the same trained weights under --arch hf_encoder
    # --layernorm-eps 1e-05 (hf_encoder's architecture function is roberta's base_architecture plus the eps)
    state = _state(ckpt)
    model_args = state["cfg"]["model"]
    model_args.arch = model_args._name = "hf_encoder"
    model_args.layernorm_eps = 1e-5
    hf = root / "hf" / "checkpoint_hf.pt"
    hf.parent.mkdir(exist_ok=True)
    torch.save(state, hf)
    out, out_hf = tmp_path / "release" / "model.pt", tmp_path / "release" / "hf.pt"
    assert main([str(ckpt), str(out)]) == 0 and main([str(hf), str(out_hf)]) == 0
    for path, arch in ((out, "roberta_base"), (out_hf, "roberta")):
        assert all(g == "collections.OrderedDict" or g.startswith("torch.") for g in pickle_globals(path))
        state = torch.load(path, weights_only=True)
        assert state["cfg"]["task"]["_name"] == "sentence_prediction"
        assert state["cfg"]["model"]["arch"] == arch and "layernorm_eps" not in state["cfg"]["model"]
        assert not plugin_traces(state["cfg"]) and "dpreg" not in state["last_optimizer_state"]

    ref = plugin_outputs(RobertaModel, ckpt, data, "classifier", bpe=None)
    ref_hf = plugin_outputs(RobertaModel, hf, data, "classifier", bpe=None)
    assert ref_hf.pop("model").__name__ == "HFEncoderModel" and ref.pop("model").__name__ == "RobertaModel"
    got = stock_outputs(tmp_path, "classifier", data, ckpt, out, out_hf)
    assert_same(ref, got[str(out)])
    assert_same(ref_hf, got[str(out_hf)])
    assert "Unsupported global: GLOBAL argparse.Namespace" in got["errors"][0]
    assert "Could not infer task type from {'_name': 'sentence_prediction_dpreg'" in got["errors"][1]


def _state(ckpt):
    """A plugin checkpoint, as the plugin reads it (argparse.Namespace is allow-listed by the plugin)."""
    assert argparse.Namespace in torch.serialization.get_safe_globals()
    return torch.load(ckpt, weights_only=True)


def test_what_has_no_stock_equivalent_is_refused(classifier, translation, tmp_path, capsys):
    root, data, ckpt = classifier
    stock = stock_names()
    state = _state(ckpt)
    state["cfg"]["model"].arch = state["cfg"]["model"]._name = "hf_encoder"
    state["cfg"]["model"].layernorm_eps = 1e-12
    with pytest.raises(ExportError, match=r"IN.pt: --arch hf_encoder with --layernorm-eps 1e-12 has no stock"):
        export_state(state, "IN.pt", stock)
    state["cfg"]["model"].layernorm_eps = 1e-5
    for pairs in ("siamese", "siamese-cosine"):
        state["cfg"]["model"].sentence_pair_encoding = pairs
        with pytest.raises(ExportError, match=rf"IN.pt: --sentence-pair-encoding {pairs} .* has\s+no stock"):
            export_state(state, "IN.pt", stock)
    state = _state(translation[2])
    state["cfg"]["model"].arch = state["cfg"]["model"]._name = "transformer_warm"
    state["cfg"]["model"].layernorm_eps = 1e-12
    with pytest.raises(ExportError, match=r"IN.pt: --arch transformer_warm with --layernorm-eps 1e-12 has no stock"):
        export_state(state, "IN.pt", stock)
    for task in ("extractive_qa_dpreg", "extractive_qa"):
        state = _state(ckpt)
        state["cfg"]["task"]["_name"] = task
        with pytest.raises(ExportError, match=f"IN.pt: task '{task}' cannot be exported: extractive question"):
            export_state(state, "IN.pt", stock)

    # an unknown task, through the command line: the message names the file; nothing is written
    state = _state(translation[2])
    state["cfg"]["task"]["_name"] = "my_task_dpreg"
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    code, err = refused(capsys, bad, tmp_path / "out.pt")
    assert code == 2
    assert f"{bad}: task 'my_task_dpreg': a *_dpreg task the plugin does not ship" in err
    assert not (tmp_path / "out.pt").exists()


def test_every_name_the_plugin_registers_is_handled():
    """A registry entry the plugin adds (task, model, criterion, optimizer) that the exporter does not know
    would leave a checkpoint that stock fairseq cannot load: each must be mapped or refused."""
    from fairseq.criterions import CRITERION_REGISTRY
    from fairseq.models import ARCH_MODEL_REGISTRY
    from fairseq.optim import OPTIMIZER_REGISTRY
    from fairseq.tasks import TASK_REGISTRY

    from fairseq_dpreg import export as ex

    def plugin(registry):
        return {n for n, c in registry.items() if not ex._stock_module(c.__module__)}

    stock = stock_names()
    assert plugin(TASK_REGISTRY) == set(ex.TASKS) | set(ex.REFUSED_TASKS)
    assert all(t in stock["task"] for t in ex.TASKS.values())
    assert plugin(CRITERION_REGISTRY) == set(ex.REFUSED_CRITERIA)
    pointer_generator = {n for n, c in ARCH_MODEL_REGISTRY.items() if c.__name__ == "TransformerPointerGeneratorModel"}
    assert plugin(ARCH_MODEL_REGISTRY) == set(ex.EPS_ARCHS) | pointer_generator
    assert all(any(n.startswith(p) for p in ex.FAIRSEQ_USER_DIR_ARCHS) for n in pointer_generator)
    assert all(stock_arch in stock["arch"] for stock_arch, _ in ex.EPS_ARCHS.values())
    assert {n for n in plugin(OPTIMIZER_REGISTRY)} == {n for n in OPTIMIZER_REGISTRY if n.startswith("dpreg_")}
    assert all(n[len("dpreg_"):] in stock["optimizer"] for n in plugin(OPTIMIZER_REGISTRY))


def test_refuses_to_overwrite_its_input_and_names_bad_files(translation, tmp_path, capsys):
    ckpt = translation[2]
    before = ckpt.read_bytes()
    proc = export(ckpt, ckpt)  # the script itself, in its own process
    assert proc.returncode == 2 and f"{ckpt}: is the input checkpoint itself" in proc.stdout
    link = tmp_path / "same.pt"
    link.symlink_to(ckpt)
    assert "is the input checkpoint itself" in refused(capsys, ckpt, link)[1]
    assert ckpt.read_bytes() == before
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    code, err = refused(capsys, junk, tmp_path / "o.pt")
    assert code == 2 and f"{junk}: cannot be read as a fairseq checkpoint" in err
    code, err = refused(capsys, tmp_path / "missing.pt", tmp_path / "o.pt")
    assert code == 2 and "missing.pt: no such checkpoint file" in err
    assert not (tmp_path / "o.pt").exists() and not list(tmp_path.glob(".o.pt.*"))
