"""`make rehearse`, shortened: the compose topology as local processes (Redis, two server
replicas, Debian's nginx) under load, through a graceful restart, a kill and a promotion."""

import json
import os
import subprocess
import sys

import pytest

import topology
from local_topology import find_nginx

REHEARSE = topology.DEPLOY / "rehearse.py"


@pytest.mark.skipif(find_nginx() is None, reason="nginx is missing: `make test` installs it")
def test_shortened_rehearsal_passes_every_check_and_leaves_nothing_running(tmp_path):
    report = tmp_path / "rehearsal.json"
    result = subprocess.run(
        [sys.executable, str(REHEARSE), "--seconds", "10", "--compare-seconds", "1.5",
         "--json", str(report)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rehearsal = json.loads(report.read_text())
    assert rehearsal["checks"] and all(rehearsal["checks"].values())
    # One client channel's calls, sent one after another, were spread over both replicas.
    assert len(rehearsal["single_channel_split"]) == 2
    assert min(rehearsal["single_channel_split"]) > 0
    assert rehearsal["events"]["failed_elsewhere"] == 0
    assert set(rehearsal["events"]["swap_s"]) == {"replica-1", "replica-2"}
    assert "PASS" in result.stdout and "FAIL" not in result.stdout
    for pid in rehearsal["pids"]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
