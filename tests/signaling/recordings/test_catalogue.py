"""catalogue: manifests become typed records; the admin's filters; changes on disk seen without a restart."""

from __future__ import annotations

import datetime
import json

from recordings_support import RecordingMaker

from signaling.recordings.catalogue import Catalogue, Filter
from signaling.recordings.files import RecordingFiles

DAY = datetime.timedelta(days=1)
NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)


def catalogue(maker: RecordingMaker) -> Catalogue:
    return Catalogue(RecordingFiles(maker.root))


def test_reads_manifests_newest_first(maker: RecordingMaker) -> None:
    old = maker.make(started=NOW - 3 * DAY)
    new = maker.make(started=NOW - DAY, consult_id="hc-2026-0042")
    found = catalogue(maker).all()
    assert [m.id for m in found] == [new, old]
    record = found[0]
    assert record.consult_id == "hc-2026-0042" and record.state == "complete"
    assert [p.facility for p in record.participants] == ["TTYT Mường Tè", "BV Bạch Mai"]
    assert record.duration == 4.5  # the second person starts 1.5 s in, with a 3 s clip
    summary = record.summary()
    assert summary["tracks"] == 4 and summary["size"] == sum(t.size or 0 for t in record.tracks)


def test_filters(maker: RecordingMaker) -> None:
    a = maker.make(started=NOW - 3 * DAY, consult_id="hc-1")
    b = maker.make(started=NOW - DAY, consult_id="hc-2", people=(("BS. Lan", "BVĐK tỉnh Lai Châu", 0.0),))
    cat = catalogue(maker)

    def ids(**kwargs: object) -> set[str]:
        return {m.id for m in cat.search(Filter(**kwargs))}  # type: ignore[arg-type]

    assert ids() == {a, b}
    assert ids(start=NOW - 2 * DAY) == {b}
    assert ids(end=NOW - 2 * DAY) == {a}
    assert ids(start=NOW - 4 * DAY, end=NOW) == {a, b}
    assert ids(consult="hc-1") == {a}
    assert ids(facility="lai châu") == {b}  # case-insensitive, Vietnamese diacritics kept
    assert ids(facility="mường tè") == {a}
    assert ids(participant="lan") == {b}
    first_person = maker.manifest(a)["participants"][0]["id"]
    assert ids(participant=first_person) == {a}
    assert ids(facility="Bạch Mai", consult="hc-2") == set()


def test_unreadable_manifests_are_left_out_and_changes_are_seen(maker: RecordingMaker) -> None:
    good = maker.make()
    broken = maker.make()
    (maker.root / broken / "manifest.json").write_text("{not json")
    (maker.root / "not-a-recording").mkdir()
    cat = catalogue(maker)
    assert [m.id for m in cat.all()] == [good]

    manifest = maker.manifest(good)
    manifest["consult_id"] = "hc-late"
    (maker.root / good / "manifest.json").write_text(json.dumps(manifest))
    assert cat.get(good).consult_id == "hc-late"

    another = maker.manifest(good)
    another["id"] = broken
    (maker.root / broken / "manifest.json").write_text(json.dumps(another))
    assert {m.id for m in cat.all()} == {good, broken}


def test_a_manifest_naming_another_recording_is_refused(maker: RecordingMaker) -> None:
    rid, other = maker.make(), maker.make()
    manifest = maker.manifest(rid)
    manifest["id"] = other
    (maker.root / rid / "manifest.json").write_text(json.dumps(manifest))
    assert [m.id for m in catalogue(maker).all()] == [other]
