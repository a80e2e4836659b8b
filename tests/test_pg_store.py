"""The PostgreSQL store: setting a database up, refusing one it cannot serve, one gapless log."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
import threading
import uuid

import pg
import pytest
from rigger.v1 import rigger_pb2 as pb
from rigger.v1 import rigger_pb2_grpc
from rigger_server import wire
from rigger_server.db_target import redact
from rigger_server.domain import EventDraft, EventType, Task, TaskStatus, now_rfc3339
from rigger_server.errors import Unavailable, VersionConflict
from rigger_server.pg_store import SCHEMA_VERSION, PostgresStore
from rigger_server.store import TaskQuery

from testkit.serverproc import ServerProcess, rig


def _created(title: str) -> tuple[Task, list[EventDraft]]:
    now = now_rfc3339()
    task = Task(str(uuid.uuid4()), title, TaskStatus.TODO, now, now, version=1)
    return task, [EventDraft(str(uuid.uuid4()), now, EventType.CREATED, task)]


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_rig_init_sets_up_a_postgresql_database_once(tmp_path: pathlib.Path):
    url = pg.empty_database()
    first = rig("init", "--db", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"Initialized {url} (schema version {SCHEMA_VERSION})" in first.stdout
    again = rig("init", "--db", url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Already initialized" in again.stdout
    applied = pg.cluster().sql("SELECT version FROM rigger.schema_migrations", _database(url))
    assert applied.split() == [str(v) for v in range(1, SCHEMA_VERSION + 1)]
    assert not (tmp_path / ".rigger").exists()


def test_rig_grpc_refuses_a_database_rig_init_never_set_up(tmp_path: pathlib.Path):
    url = pg.empty_database()
    done = rig("grpc", "--port", "0", "--db", url, cwd=tmp_path)
    assert done.returncode == 1
    assert "no Rigger schema in this database; run `rig init --db URL` first" in done.stderr
    assert "Traceback" not in done.stderr


def test_rig_grpc_refuses_a_database_of_a_newer_rigger(tmp_path: pathlib.Path):
    url = pg.fresh_database()
    pg.cluster().sql(
        "INSERT INTO rigger.schema_migrations (version, description) VALUES (999, 'future')",
        _database(url),
    )
    done = rig("grpc", "--port", "0", "--db", url, cwd=tmp_path)
    assert done.returncode == 1
    assert "schema version 999 is newer than this Rigger's" in done.stderr
    assert "upgrade Rigger" in done.stderr


def test_rig_init_refuses_what_is_not_a_postgresql_url(tmp_path: pathlib.Path):
    done = rig("init", "--db", "tasks.db", cwd=tmp_path)
    assert done.returncode == 2
    assert "expected a postgresql:// URL" in done.stderr


def test_the_banner_names_the_database_without_its_password(tmp_path: pathlib.Path):
    # The test cluster trusts loopback connections, so any password works.
    url = pg.fresh_database().replace("postgres@", "postgres:s3cret@")
    server = ServerProcess(tmp_path, db=url).start()
    try:
        assert f"Database: {redact(url)}" in server.banner
        assert "postgres:***@" in server.banner
    finally:
        server.stop()
    assert "s3cret" not in server.banner + server.read_log()


def test_without_the_extra_rig_grpc_names_the_install_command(tmp_path: pathlib.Path):
    hide = (
        "import sys; sys.modules['psycopg'] = None; "
        "from rigger_server.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide, "grpc", "--port", "0", "--db", "postgresql://u@h/db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "pip install 'rigger[postgres]'" in done.stderr


@pytest.fixture
def store():
    opened = PostgresStore(pg.fresh_database(), wire.encode_event)
    yield opened
    opened.close()


def test_concurrent_writers_on_two_stores_share_one_gapless_log(store: PostgresStore):
    other = PostgresStore(store.url, wire.encode_event)
    try:
        written: list[int] = []

        def write(target: PostgresStore) -> None:
            for n in range(50):
                with target.atomic():
                    written.extend(e.sequence for e in target.insert_task(*_created(f"{n}")))

        threads = [threading.Thread(target=write, args=(s,)) for s in (store, other, store)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        other.close()
    assert sorted(written) == list(range(1, 151))
    assert [e.sequence for e in store.events_after(0, 1000)] == list(range(1, 151))
    assert store.last_sequence() == 150


def test_a_write_undone_in_its_savepoint_gives_its_sequence_back(store: PostgresStore):
    with store.atomic():
        store.insert_task(*_created("kept"))
        with pytest.raises(VersionConflict), store.atomic():
            task, drafts = _created("undone")
            store.insert_task(task, drafts)
            store.replace_task(task, expected_version=7, events=drafts)
        store.insert_task(*_created("kept too"))
    events = store.events_after(0, 10)
    assert [e.sequence for e in events] == [1, 2]
    tasks, total = store.list_tasks(TaskQuery())
    assert total == 2
    assert {t.title for t in tasks} == {"kept", "kept too"}


def test_a_stored_event_keeps_its_bytes_and_what_a_filter_needs(store: PostgresStore):
    task, drafts = _created("bytes")
    task = dataclasses.replace(task, assignee="ann")
    drafts = [dataclasses.replace(drafts[0], task=task)]
    (written,) = store.insert_task(task, drafts)
    (read,) = store.events_after(0, 1)
    assert read == written
    assert read.assignee == "ann"
    assert read.payload == wire.encode_event(drafts[0], 1)


def test_a_page_of_events_stops_once_their_bytes_reach_the_budget(store: PostgresStore):
    for n in range(6):
        store.insert_task(*_created(f"{n} " + "x" * 1000))
    sizes = [len(e.payload) for e in store.events_after(0, 10)]
    budget = sizes[0] + sizes[1] + 1  # reached by the third event
    assert [e.sequence for e in store.events_after(0, 10, budget)] == [1, 2, 3]
    assert [e.sequence for e in store.events_after(2, 10, budget)] == [3, 4, 5]
    assert [e.sequence for e in store.events_after(0, 2, budget)] == [1, 2]
    assert [e.sequence for e in store.events_after(0, 10, 1)] == [1]  # the first always comes
    assert store.events_after(0, 10, budget)[0].payload == store.events_after(0, 1)[0].payload


def test_a_closed_store_is_unavailable(store: PostgresStore):
    store.close()
    with pytest.raises(Unavailable):
        store.last_sequence()


def test_rig_grpc_reaches_no_postgresql_with_a_clear_error(tmp_path: pathlib.Path):
    url = pg.fresh_database().replace(str(pg.cluster().port), "1")
    done = rig("grpc", "--port", "0", "--db", url, cwd=tmp_path, timeout=60)
    assert done.returncode == 1
    assert "error: --db: cannot reach postgresql://" in done.stderr


def test_a_parsed_prd_is_stored_in_postgresql(tmp_path: pathlib.Path):
    url = pg.fresh_database()
    (tmp_path / "prd.md").write_text("# Login\n\n## Objectives\n- Sign in\n", encoding="utf-8")
    server = ServerProcess(tmp_path, db=url).start()
    try:
        with server.channel() as channel:
            reply = rigger_pb2_grpc.RiggerServiceStub(channel).ParsePRD(
                pb.ParsePRDRequest(prd_file_path="prd.md"), timeout=10
            )
    finally:
        server.stop()
    stored = pg.cluster().sql(
        f"SELECT title, objectives FROM rigger.prds WHERE id = '{reply.prd_id}'", _database(url)
    )
    assert stored == 'Login|{"Sign in"}'


def test_a_connection_lost_mid_write_fails_unavailable_and_the_next_write_works(
    store: PostgresStore,
):
    with pytest.raises(Unavailable), store.atomic() as conn:
        store.insert_task(*_created("lost"))
        pid = conn.info.backend_pid
        pg.cluster().sql(f"SELECT pg_terminate_backend({pid})", store.url.rsplit("/", 1)[1])
        with store.atomic():
            store.insert_task(*_created("on a dead connection"))
    (event,) = store.insert_task(*_created("after"))
    assert event.sequence == 1
    assert [e.sequence for e in store.events_after(0, 10)] == [1]


def test_replace_statuses_changes_nothing_when_one_task_moved_on(store: PostgresStore):
    written = [_created(f"t{n}") for n in range(3)]
    for task, drafts in written:
        store.insert_task(task, drafts)
    tasks = [task for task, _ in written]
    store.replace_task(dataclasses.replace(tasks[1], title="moved", version=2), 1, [])
    gone = [
        dataclasses.replace(t, status=TaskStatus.ARCHIVED, version=2, updated_at="later")
        for t in tasks
    ]
    with pytest.raises(VersionConflict), store.atomic():
        store.replace_statuses([(t, 1) for t in gone], written[0][1])
    assert [store.get_task(t.id).status for t in tasks] == [TaskStatus.TODO] * 3
    events = store.replace_statuses([(gone[0], 1), (gone[2], 1)], written[0][1] + written[2][1])
    assert [e.sequence for e in events] == [4, 5]
    assert store.get_task(gone[0].id) == gone[0]
