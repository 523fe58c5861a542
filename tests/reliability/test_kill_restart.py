"""Kill and restart: writers keep appending to many event logs and (re)writing session files
while `reev-ingestd` is killed with SIGKILL at random moments and started again. Once the
writers are done and the daemon has caught up, its database must equal, record for record,
what one clean `--once` run over the same final files produces (a SQLite file: on PostgreSQL too,
where the daemon's source lock dies with it)."""

import json
import os
import random
import threading
import time

from tests import dbread
from tests import fixtures as fx
from tests.reliability.conftest import scale
from tests.reliability.support import dump, once_db, wait_same_dump

BENCHMARKS = {f"40{i}-kill-bench": f"Kill scenario task {i}: move some SOL." for i in range(3)}
AGENTS = ["deterministic", "local", "glm-4.6"]


class RunWriter(threading.Thread):
    """Writes the files of a few executions the way reev does: event lines appended (sometimes
    one line in two writes with a pause between), session files truncated and rewritten in
    place in two writes, sometimes rewritten again with another result."""

    def __init__(self, workspace, ids: list[str], seed: int, stop: threading.Event, max_ops: int):
        super().__init__(daemon=True)
        self.ws, self.ids, self.stop, self.max_ops = workspace, ids, stop, max_ops
        self.rng = random.Random(seed)
        self.items: dict[str, list] = {i: [] for i in ids}       # every line written, in order
        self.session: dict[str, dict | None] = {i: None for i in ids}   # the last session document
        self.ops = 0
        self.error: BaseException | None = None

    def run(self):
        try:
            while not self.stop.is_set() and self.ops < self.max_ops:
                self.ops += 1
                eid = self.rng.choice(self.ids)
                r = self.rng.random()
                if r < 0.07:
                    self._write_session(eid)
                elif r < 0.22:
                    self._append_split(eid)
                else:
                    self._append_whole(eid, self.rng.randint(1, 4))
                time.sleep(self.rng.uniform(0, 0.004))
        except BaseException as e:   # reported by the test
            self.error = e

    # ---------------------------------------------------------------- event lines

    def _next_line(self, eid: str):
        n = len(self.items[eid])
        at, sid = n * 0.25, f"inner-{eid}"
        if n == 0:
            prompt = self.rng.choice(list(BENCHMARKS.values()) + ["an ad-hoc prompt"])
            return fx.prompt_line(prompt, at=at, session_id=sid)
        r = self.rng.random()
        tool = self.rng.choice(["sol_transfer", "jupiter_swap", "get_account_balance"])
        if r < 0.33:
            return fx.tool_input_line(tool, {"amount": self.rng.randint(1, 10**9)}, at=at, session_id=sid)
        if r < 0.62:
            ok = self.rng.random() < 0.8
            return fx.tool_output_line(ok, '["sig"]' if ok else {"error": "RPC"}, at=at, session_id=sid,
                                       error_message=None if ok else "RPC error")
        if r < 0.72:
            return fx.step_complete_line(f"step-{n}", at=at, session_id=sid)
        if r < 0.79:
            return fx.unknown_event_line(at=at, session_id=sid)
        if r < 0.85:
            return fx.legacy_call_line(tool, {"n": n}, at=at, session_id=sid, execution_time_ms=n)
        if r < 0.90:
            return fx.legacy_update_line(tool, at=at, output_result={"done": n}, session_id=sid)
        if r < 0.95:
            return fx.summary_line(at=at, session_id=sid)
        if r < 0.975:
            return "{not json, line %d" % (n + 1)          # bad input: one ingest error
        return ""                                            # a blank line: skipped

    def _append_whole(self, eid: str, count: int):
        items = [self._next_line(eid) for _ in range(count)]
        self.ws.append_raw(self.ws.events_path(eid), fx.jsonl(items))
        self.items[eid].extend(items)

    def _append_split(self, eid: str):
        item = self._next_line(eid)
        data = fx.line_text(item) + b"\n"
        cut = self.rng.randint(1, max(1, len(data) - 1))
        with open(self.ws.events_path(eid), "ab") as f:
            f.write(data[:cut])
            f.flush()
            time.sleep(self.rng.uniform(0, 0.03))
            f.write(data[cut:])
        self.items[eid].append(item)

    # ---------------------------------------------------------------- session files

    def _write_session(self, eid: str):
        previous = self.session[eid]
        # A finished run stays finished (a rewrite may flip its result); an unfinished one may finish.
        finished = previous is not None and "final_result" in previous or self.rng.random() < 0.7
        success = self.rng.random() < 0.6
        doc = fx.session_doc(f"inner-{eid}", benchmark_id=self.rng.choice(list(BENCHMARKS)),
                             agent_type=self.rng.choice(AGENTS), finished=finished, success=success,
                             score=round(self.rng.random(), 3) if finished and not success else None)
        data = fx.session_bytes(doc)
        cut = self.rng.randint(1, len(data) - 1)
        with open(self.ws.session_path(eid), "wb") as f:       # open(truncate) + write + flush
            f.write(data[:cut])
            f.flush()
            time.sleep(self.rng.uniform(0, 0.03))
            f.write(data[cut:])
        self.session[eid] = doc

    # ---------------------------------------------------------------- what must be in the database

    def expected_events(self, eid: str) -> int:
        return sum(1 for i in self.items[eid] if i != "" and not (isinstance(i, str) and i.startswith("{not json")))

    def expected_status(self, eid: str) -> str:
        doc = self.session[eid]
        if doc is None or "final_result" not in doc:
            return "Running"
        return "Completed" if doc["final_result"]["success"] else "Failed"


def stored_events(db) -> int:
    try:
        return db.scalar("SELECT count(*) FROM events") or 0
    except dbread.Unreadable:   # killed before the database or its schema existed
        return 0


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(workspace, live_daemon, run_once, tmp_path, db,
                                                                backend):
    seed = int(os.environ.get("REEV_RELIABILITY_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    kills = scale(10, 40)
    n_runs, n_writers = scale(36, 240), scale(3, 6)
    print(f"\nseed {seed} (REEV_RELIABILITY_SEED to replay the kill moments and the writers' choices)")
    for bench_id, prompt in BENCHMARKS.items():
        workspace.write_benchmark(bench_id, fx.benchmark_yaml(bench_id, prompt=prompt))

    ids = [f"kill-{i:04d}" for i in range(n_runs)]
    stop = threading.Event()
    writers = [RunWriter(workspace, ids[w::n_writers], rng.randrange(1 << 30), stop, max_ops=scale(4000, 40000))
               for w in range(n_writers)]
    for w in writers:
        w.start()

    at_kill, early = [], 0
    try:
        for _ in range(kills):
            d = live_daemon(rescan=rng.choice([0.3, 1.0]), ready=False)
            if rng.random() < 0.3:
                early += 1                                     # during start-up, schema and first scan
                time.sleep(rng.uniform(0, 0.5))
            else:
                d.wait_ready()
                time.sleep(rng.uniform(0.05, 0.9))             # in the middle of the work
            d.check_alive()
            d.kill()
            at_kill.append(stored_events(db))
            time.sleep(rng.uniform(0, 0.4))                    # down for a while: a backlog builds up
    finally:
        stop.set()
        for w in writers:
            w.join(30)
    for w in writers:
        assert w.error is None, f"writer failed: {w.error!r}"
        assert not w.is_alive()

    final = live_daemon()
    started = time.monotonic()
    once_db(run_once, workspace, tmp_path / "once.db")
    reference = dump(tmp_path / "once.db")
    caught_up = wait_same_dump(reference, workspace.db_target, timeout=30, alive=final.check_alive)
    caught_up_total = time.monotonic() - started

    # The reference itself holds every line written (none lost by either run) and the right status.
    records = [json.loads(r) for r in reference]
    events = {}
    for r in records:
        if r["table"] == "event":
            events[r["execution_id"]] = events.get(r["execution_id"], 0) + 1
    statuses = {r["execution_id"]: r["status"] for r in records if r["table"] == "execution"}
    lines_written = 0
    for w in writers:
        for eid in w.ids:
            lines_written += len(w.items[eid])
            if not w.items[eid] and w.session[eid] is None:
                continue
            assert events.get(eid, 0) == w.expected_events(eid), eid
            assert statuses[eid] == w.expected_status(eid), eid
    assert db.scalar("SELECT count(*) FROM events") == sum(events.values())
    ops = sum(w.ops for w in writers)
    for n in range(1, len(at_kill) + 2):
        text = (tmp_path / f"reev-ingestd-{n}.stderr").read_text(errors="replace")
        assert "Traceback" not in text and "database error" not in text, f"daemon #{n}:\n{text[-3000:]}"

    print(f"kills: {len(at_kill)} ({early} during start-up); writer operations: {ops}; lines written: "
          f"{lines_written} in {n_runs} event logs; events stored at each kill: {at_kill}; "
          f"caught up {caught_up_total:.2f} s after the last restart (dump equal {caught_up:.2f} s after --once)")
    assert len(at_kill) == kills
    assert at_kill[-1] > 0, "the daemon never got to commit anything between kills"
