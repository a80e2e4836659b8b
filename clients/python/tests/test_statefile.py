"""StateFile keeps one sequence, replaced atomically, and refuses anything else."""

from __future__ import annotations

import os
import pathlib
import threading

import pytest
from rigger_client.statefile import MAX_BYTES, StateFile, StateFileError


def test_a_missing_file_holds_no_sequence_yet(tmp_path: pathlib.Path) -> None:
    assert StateFile(tmp_path / "state").load() is None


def test_a_saved_sequence_is_loaded_back(tmp_path: pathlib.Path) -> None:
    state = StateFile(tmp_path / "state")
    state.save(41)
    state.save(42)
    assert state.load() == 42
    assert (tmp_path / "state").read_bytes() == b"42\n"


def test_saving_leaves_no_temporary_file_behind(tmp_path: pathlib.Path) -> None:
    state = StateFile(tmp_path / "state")
    state.check_writable()
    for sequence in range(5):
        state.save(sequence)
    assert [p.name for p in tmp_path.iterdir()] == ["state"]


@pytest.mark.parametrize(
    ("content", "sequence"),
    [(b"0", 0), (b"7", 7), (b" 7 \r\n", 7), (b"18446744073709551615\n", 2**64 - 1)],
)
def test_a_sequence_may_be_written_by_hand(
    tmp_path: pathlib.Path, content: bytes, sequence: int
) -> None:
    (tmp_path / "state").write_bytes(content)
    assert StateFile(tmp_path / "state").load() == sequence


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "is empty"),
        (b" \n", "is empty"),
        (b"abc", "not a sequence"),
        (b"-1", "not a sequence"),
        (b"+1", "not a sequence"),
        (b"1.5", "not a sequence"),
        (b"0x10", "not a sequence"),
        (b"1 2", "not a sequence"),
        (b"18446744073709551616", "not a sequence"),
        ("\u0661\u0662".encode(), "not a sequence"),  # Arabic-Indic digits
        (b"\xff\x00\x1b[2J", "not a sequence"),
        (b"1" * (MAX_BYTES + 1), "more than a sequence"),
        (b"7\n" + b" " * MAX_BYTES, "more than a sequence"),
    ],
)
def test_anything_but_a_sequence_is_refused(
    tmp_path: pathlib.Path, content: bytes, reason: str
) -> None:
    (tmp_path / "state").write_bytes(content)
    with pytest.raises(StateFileError, match=reason):
        StateFile(tmp_path / "state").load()


def test_refusals_show_hostile_content_escaped(tmp_path: pathlib.Path) -> None:
    (tmp_path / "state").write_bytes(b"\x1b[2J\n")
    with pytest.raises(StateFileError) as refused:
        StateFile(tmp_path / "state").load()
    assert "\x1b" not in str(refused.value)


def test_a_directory_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(StateFileError, match="not a regular file"):
        StateFile(tmp_path).load()


def test_a_device_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(StateFileError, match="not a regular file"):
        StateFile("/dev/zero").load()


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "state"
    os.mkfifo(fifo)
    outcome: list[BaseException | int | None] = []
    reader = threading.Thread(target=lambda: outcome.append(_load(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), "load() blocked on a FIFO"
    assert isinstance(outcome[0], StateFileError)
    assert "not a regular file" in str(outcome[0])


def _load(path: pathlib.Path) -> BaseException | int | None:
    try:
        return StateFile(path).load()
    except StateFileError as exc:
        return exc


def test_a_missing_directory_is_found_before_the_first_save(tmp_path: pathlib.Path) -> None:
    state = StateFile(tmp_path / "gone" / "state")
    with pytest.raises(StateFileError, match=r"^its directory cannot be written: no such file"):
        state.check_writable()
    with pytest.raises(StateFileError, match=r"^cannot record #3: no such file or directory$"):
        state.save(3)


def test_a_symlinked_state_file_is_read_through_and_replaced_not_written_through(
    tmp_path: pathlib.Path,
) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("5\n")
    (tmp_path / "state").symlink_to(target)
    state = StateFile(tmp_path / "state")
    assert state.load() == 5
    state.save(6)
    assert target.read_text() == "5\n"
    assert not (tmp_path / "state").is_symlink()
    assert state.load() == 6
