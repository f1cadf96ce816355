"""What a worker process imports to start: nothing it may never use (issue 15: start-up).

asyncio (and ssl with it) is imported where an ``async def`` job first runs or an async
form is awaited; cattrs with the first params or result checked; ctypes by a supervised
child; hashlib by the first unique job keyed by its params.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import TIMEOUT

LAZY = ("asyncio", "ssl", "cattrs", "ctypes", "hashlib")


def imported_by(code: str) -> list[str]:
    probe = f"import sys; {code}; import json; print(json.dumps([m for m in {LAZY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=TIMEOUT, check=True)
    found: list[str] = json.loads(done.stdout.splitlines()[-1])
    return found


def test_the_worker_command_starts_without_what_it_may_never_use() -> None:
    assert imported_by("import jobkit.worker") == []


def test_what_is_left_out_comes_in_when_it_is_used() -> None:
    checked = "import jobkit; jobkit.codec.structure(1, int, what='params')"
    assert imported_by(checked) == ["cattrs"]
    keyed = "import jobkit; jobkit.codec.canonical_key('{}')"
    assert "hashlib" in imported_by(keyed)
    async_job = (
        "import jobkit; jobs = jobkit.Registry(); "
        "exec('async def twice(n: int, ctx: jobkit.Context) -> int:\\n    return 2 * n'); "
        "assert jobs.job(name='t:twice')(twice).now(2).value == 4"
    )
    assert "asyncio" in imported_by(async_job)
