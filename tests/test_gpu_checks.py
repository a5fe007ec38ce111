"""scripts/gpu_checks.sh, the prepared GPU run: its arguments are checked before it spends any time.
(Its stages were tried with SMOKE=1 on the CPU; running them here would take minutes.)"""

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_checks.sh"


def call(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_no_action_or_an_unknown_part_is_refused_at_once(tmp_path):
    result = call()
    assert result.returncode == 2 and "usage: scripts/gpu_checks.sh prepare | run" in result.stderr
    result = subprocess.run(["bash", str(SCRIPT), "run", "bench", "benchmark"], capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)})
    assert result.returncode == 2 and "unknown part benchmark: bench or memory" in result.stderr
    assert not any(tmp_path.iterdir())  # nothing ran
