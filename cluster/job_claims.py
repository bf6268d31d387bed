"""Once-only recordings jobs decided in Redis (behind ``signaling.recordings.jobs.JobClaims``): every signaling
process runs the retention sweep and a combine worker over the one shared recordings directory, and the first to
claim a job in Redis does it; the others leave it.

A claim is ``job:<kind>:<recording>`` holding the claimant's process id, taken by one Lua script: free, or held by a
process whose liveness key (``process:<id>:alive``) is gone (it died mid-job: the job may be taken over). A job done
for good (a deletion) leaves ``done`` there, so a process that listed the recording before it went does not try
again. Claims expire after ``HOLD_SECONDS`` at most, so nothing is held for ever by a mistake.
"""

from __future__ import annotations

from redis import Redis

from signaling.recordings.jobs import JobKind

from .keys import Keys

__all__ = ["HOLD_SECONDS", "RedisClaims"]

HOLD_SECONDS = 24 * 3600
DONE = "done"

# KEYS[1] the claim; ARGV: this process's id, the liveness key's prefix and suffix (``process:`` ``:alive``), ttl.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return 0 end
if holder then
  if holder == 'done' then return 0 end
  if redis.call('EXISTS', ARGV[2] .. holder .. ARGV[3]) == 1 then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
return 1
"""

# KEYS[1] the claim; ARGV[1] this process's id: released only if still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisClaims:
    def __init__(self, redis: Redis, keys: Keys, process_id: str) -> None:
        self._redis = redis
        self._keys = keys
        self._process = process_id
        alive = keys.process_alive(keys.inbox(process_id))
        self._alive_prefix = alive[: alive.index(process_id)]
        self._alive_suffix = alive[alive.index(process_id) + len(process_id):]
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)

    def claim(self, kind: JobKind, recording_id: str) -> bool:
        key = self._keys.job(kind, recording_id)
        args = [self._process, self._alive_prefix, self._alive_suffix, HOLD_SECONDS]
        return bool(self._claim(keys=[key], args=args))

    def release(self, kind: JobKind, recording_id: str) -> None:
        self._release(keys=[self._keys.job(kind, recording_id)], args=[self._process])

    def finish(self, kind: JobKind, recording_id: str) -> None:
        self._redis.set(self._keys.job(kind, recording_id), DONE, ex=HOLD_SECONDS)
