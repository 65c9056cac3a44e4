import os
from pathlib import Path

# One torch thread in this process and every process a test starts (they inherit the environment), unless the
# caller says otherwise. The models of the tests are tiny, so a second thread gains nothing, and with two test
# workers (make test runs pytest -n 2) or any other load on the cores, OpenMP threads that wait for a busy core
# make a run many times slower. Set here, before anything imports torch.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# The longest test files first (roughly: by their durations on 2 idle cores). With two workers each taking a whole
# file at a time (make test), a long file that starts last keeps one worker busy alone at the end.
LONGEST_FIRST = [
    "test_experiment_resume.py", "test_pretrained_finetune.py", "test_fairseq_glue.py", "test_experiment.py",
    "test_experiment_pipelines.py", "test_failure_modes.py", "test_gigaword_warm.py", "test_user_errors.py",
    "test_superglue_train.py", "test_distributed.py", "test_mixed_precision.py", "test_export_checkpoint.py",
    "test_gigaword_pipeline.py",
]

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DPREG_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(items):
    """Run the files of LONGEST_FIRST first, in that order, then the others; the order inside a file is kept."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def shared_data():
    """Path to ../shared/data. Missing data is a failure (never a silent skip): CI must have it."""
    if not SHARED_DATA.is_dir():
        pytest.fail(
            f"../shared/data not found at {SHARED_DATA}: these tests need the project's shared data "
            "(set DPREG_SHARED_DATA to its location)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root():
    return REPO
