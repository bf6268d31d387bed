"""Link-test receipts: a client can prove the probes it received, and cannot claim one it did not."""

from __future__ import annotations

import json

import pytest

from media.linktest_wire import DATA, ForgedReceipt, NonceBook, ReceiptBook, pack, runs_of, unpack


def test_probes_round_trip_and_junk_is_not_a_probe() -> None:
    data = pack(DATA, 7, 2**63 + 5, 12.5, 300)
    assert len(data) == 300 and unpack(data) == (DATA, 7, 2**63 + 5, 12.5)
    assert unpack(b"short") is None and unpack(bytes([9]) + bytes(30)) is None


def test_runs() -> None:
    assert runs_of([5, 1, 2, 3, 7, 7, 8]) == [[1, 3], [5, 5], [7, 8]]
    assert runs_of([]) == []


def sent(book: NonceBook, n: int) -> list[tuple[int, int]]:
    return [book.issue(100, float(i), "ping") for i in range(n)]


def test_a_true_receipt_proves_exactly_what_arrived() -> None:
    book, client = NonceBook(), ReceiptBook()
    probes = sent(book, 10)
    for seq, nonce in probes:
        if seq % 3:  # the client got two thirds of them
            client.add(seq, nonce)
    proven = book.verify(json.loads(client.take(1000.0)))
    assert proven == [s for s, _ in probes if s % 3]
    assert book.received == set(proven)
    assert book.verify(json.loads(client.take(1000.0))) == []  # an empty receipt keeps the beat and proves nothing


def forged(runs: list[list[int]], x: int) -> dict[str, object]:
    return {"type": "receipt", "t": 5.0, "runs": runs, "x": f"{x:016x}"}


def test_claims_beyond_what_arrived_are_refused_and_change_nothing() -> None:
    book = NonceBook()
    probes = sent(book, 10)
    real = probes[0][1] ^ probes[1][1]
    with pytest.raises(ForgedReceipt):
        book.verify(forged([[0, 2]], real))  # claims probe 2 without knowing its nonce
    with pytest.raises(ForgedReceipt):
        book.verify(forged([[0, 1], [50, 50]], real))  # a probe never sent
    with pytest.raises(ForgedReceipt):
        book.verify(forged([[0, 0], [0, 1]], real ^ probes[0][1]))  # probe 0 twice
    assert book.received == set()
    assert book.verify(forged([[0, 1]], real)) == [0, 1]
    with pytest.raises(ForgedReceipt):
        book.verify(forged([[1, 1]], probes[1][1]))  # already proven: a replay


@pytest.mark.parametrize("message", [
    {"runs": "0-5", "x": "00"}, {"runs": [[0, 1]], "x": 5}, {"runs": [[0, 1]], "x": "zz"},
    {"runs": [[3, 1]], "x": "00"}, {"runs": [[0, True]], "x": "00"}, {"runs": [[0, 10**9]], "x": "00"},
    {"runs": [[0]], "x": "00"}, {"runs": [[0, 1]] * 5000, "x": "00"},
])
@pytest.mark.parametrize("at", [1.5, None, "1.5", True, float("nan")])
def test_malformed_receipts_are_refused(message: dict[str, object], at: object) -> None:
    book = NonceBook()
    sent(book, 3)
    with pytest.raises(ForgedReceipt):
        book.verify({**message, "t": at} if at is not None else message)
    if at != 1.5:  # a well-formed receipt, but for its time
        with pytest.raises(ForgedReceipt):
            book.verify({"runs": [], "x": "0000000000000000", **({} if at is None else {"t": at})})
    assert book.received == set()
