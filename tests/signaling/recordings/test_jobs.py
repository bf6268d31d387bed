"""Embedded claims of once-only recordings jobs: the same rules as the Redis ones, in one process."""

from __future__ import annotations

from signaling.recordings.jobs import COMBINE, DELETE, LocalClaims, deletion


def test_a_job_is_held_once_released_or_finished() -> None:
    claims = LocalClaims()
    assert claims.claim(COMBINE, "rec-1")
    assert not claims.claim(COMBINE, "rec-1")  # held
    assert claims.claim(DELETE, "rec-1") and claims.claim(COMBINE, "rec-2")  # other jobs, other claims
    claims.release(COMBINE, "rec-1")
    assert claims.claim(COMBINE, "rec-1")
    claims.finish(DELETE, "rec-1")
    claims.release(DELETE, "rec-1")  # a finished job stays finished
    assert not claims.claim(DELETE, "rec-1")


def test_a_deletion_claims_the_combine_job_too() -> None:
    claims = LocalClaims()
    with deletion(claims, "rec-1") as claim:
        assert claim.refused is None
        assert not claims.claim(COMBINE, "rec-1")  # no combine starts while it goes
        with deletion(claims, "rec-1") as second:
            assert second.refused == "deleting"
    assert claims.claim(COMBINE, "rec-1")  # not done: both released
    with deletion(claims, "rec-1") as claim:
        assert claim.refused == "combining"
    claims.release(COMBINE, "rec-1")
    with deletion(claims, "rec-1") as claim:
        claim.done = True
    assert claims.claim(COMBINE, "rec-1") and not claims.claim(DELETE, "rec-1")  # deleted for good
