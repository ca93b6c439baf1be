"""Jobs run inline and through submitit's local executor, in order, and report failures."""

import pytest

from xinterp_utils.jobs import JobsFailed, run_jobs
from xinterp_utils.profiles import load_profile

JOBS = [{"name": "smoke", "overrides": ["seeds=[7]"]}, {"name": "demo"}]


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_results_come_back_in_order(executor, tmp_path):
    results = run_jobs(load_profile, JOBS, executor=executor, folder=tmp_path,
                       workers=2, poll_seconds=0.2, progress=False)
    assert [p.name for p in results] == ["smoke", "demo"]
    assert results[0].seeds == [7]


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_failures_are_collected_and_named(executor, tmp_path):
    jobs = [{"name": "smoke"}, {"name": "no-such-profile"}, {"name": "demo"}]
    with pytest.raises(JobsFailed) as info:
        run_jobs(load_profile, jobs, executor=executor, folder=tmp_path, poll_seconds=0.2,
                 progress=False)
    assert set(info.value.failures) == {1}
    assert "no-such-profile" in str(info.value)
    assert "1 of 3 jobs failed" in str(info.value)


def test_unknown_executor():
    with pytest.raises(ValueError, match="executor"):
        run_jobs(load_profile, JOBS, executor="kubernetes")
