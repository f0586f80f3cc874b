"""The pre-faulted arena reserve (posrecon/arena_reserve.py, engine/_arena_reserve.c).

The allocator is process-wide and cannot be taken out again, so every check runs in a child interpreter. The
checks: objects built on the reserve's arenas hold their values; the arenas come from the reserve (not the
default mapping), freed ones are kept populated up to the reserve's size and given back beyond it; a second
install is refused; a forked child (no filler thread, the lock reset) still allocates; 0 MB installs nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from posrecon import arena_reserve

pytestmark = pytest.mark.skipif(
    arena_reserve._module() is None, reason="the reserve is built with the compiled engine (make native)"
)


def _child(code: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, env=env
    )
    assert run.returncode == 0, run.stderr
    result: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


_GROW_AND_FREE = """
    import json, threading, time
    from posrecon import arena_reserve
    status = arena_reserve.install({mb})
    # a new thread's first Python frame takes a 16 KiB data-stack chunk through the same allocator hook, before
    # any arena is asked for (as the worker's threads do): the reserve must not take that for the arena size
    worker = threading.Thread(target=lambda: sum(range(10)))
    worker.start()
    worker.join()
    def build(n):
        return [(i, str(i) * 3, [i, i + 1]) for i in range(n)]
    state = build(600_000)  # about 150 MB of small objects: many arenas
    intact = all(t[0] == i and t[1] == str(i) * 3 and t[2] == [i, i + 1] for i, t in enumerate(state))
    grown = arena_reserve.stats()
    del state  # every arena of it freed
    freed = arena_reserve.stats()
    time.sleep(0.5)  # the filler tops the reserve up again
    again = build(200_000)
    intact = intact and all(t[1] == str(i) * 3 for i, t in enumerate(again))
    print(json.dumps({{"installed": status.installed, "reason": status.reason, "intact": intact,
                      "grown": grown, "freed": freed, "again": arena_reserve.stats(),
                      "second": arena_reserve.install({mb}).reason}}))
"""


def test_arenas_come_from_the_reserve_and_freed_ones_are_kept_up_to_its_size() -> None:
    out = _child(_GROW_AND_FREE.format(mb=16))
    assert out["installed"] is True and out["intact"] is True
    grown, freed, again = out["grown"], out["freed"], out["again"]
    assert isinstance(grown, dict) and isinstance(freed, dict) and isinstance(again, dict)
    arena = grown["arena_bytes"]
    assert isinstance(arena, int) and arena >= 256 << 10  # pymalloc's arenas: 256 KiB, 1 MiB since 3.10
    # most arenas were served populated by the filler thread, not mapped on the spot (the first one always is:
    # it tells the reserve the arena size)
    assert grown["served"] > 10 * grown["fallbacks"], grown
    assert grown["populated"] >= grown["served"]
    # freed arenas: up to the reserve's size kept populated, the rest released: what is populated and unused stays
    # below twice the reserve plus the region being carved (16 MiB)
    assert freed["reused"] > 0 and freed["released"] > 0, freed
    assert freed["reusable"] * arena <= 16 << 20, freed
    assert (freed["reusable"] + freed["ready"]) * arena <= (2 * 16 + 16) << 20, freed
    # the next growth takes the kept and re-populated arenas first
    assert again["served"] > freed["served"]
    assert out["second"] == "already installed"


def test_a_forked_child_allocates_without_the_filler_thread() -> None:
    out = _child(
        """
        import json, os
        from posrecon import arena_reserve
        arena_reserve.install(8)
        keep = [str(i) * 5 for i in range(200_000)]
        pid = os.fork()
        if pid == 0:
            grown = [(i, str(i)) for i in range(400_000)]  # more than the inherited reserve holds
            ok = all(t[1] == str(t[0]) for t in grown) and arena_reserve.stats()["filler_running"] == 0
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"child": os.waitstatus_to_exitcode(status), "parent_filler": arena_reserve.stats()["filler_running"]}))
        """
    )
    assert out == {"child": 0, "parent_filler": 1}


def test_zero_megabytes_installs_nothing() -> None:
    out = _child(
        """
        import json
        from posrecon import arena_reserve
        status = arena_reserve.install(0)
        print(json.dumps({"installed": status.installed, "stats": arena_reserve.stats()}))
        """
    )
    assert out["installed"] is False
    stats = out["stats"]
    assert isinstance(stats, dict) and stats["installed"] == 0 and stats["served"] == 0
