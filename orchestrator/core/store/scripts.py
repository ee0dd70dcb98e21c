"""Lua scripts the store runs inside Redis, where a check and a write must be one step."""

from __future__ import annotations

# Create records (a job, or a context with its precompute job) only if none exists yet (the first
# ARGV[8] of them may exist: a context replaced with its new precompute job); reserve
# the job's token budget against its API key's quota; and queue the job for the workers — all
# in one step. Two concurrent submits can never both fit into the last of a quota, and a job is
# never stored without being queued (nor queued without being stored), whenever Redis dies.
#   KEYS: 1 key usage hash, 2 key reserved hash, 3 jobs-by-time zset, 4 schema version,
#         5 job stream, 6 the owner's jobs zset, 7.. records
#   ARGV: 1 API key id, 2 tokens to reserve, 3 quota (-1: none), 4 job id, 5 created at,
#         6 schema version, 7 "1" to queue the job, 8 records that may be replaced (leading),
#         9.. record JSON (in the order of their keys)
#   Returns 1 created, 0 a record exists already, -1 over quota.
CREATE_RECORDS = """
for i = 7 + tonumber(ARGV[8]), #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 0 end
end
local amount = tonumber(ARGV[2])
local quota = tonumber(ARGV[3])
if quota >= 0 then
  local used = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
  if used + reserved + amount > quota then return -1 end
end
if amount > 0 then redis.call('HINCRBY', KEYS[2], ARGV[1], amount) end
for i = 7, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 2]) end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[4])
redis.call('SET', KEYS[4], ARGV[6])
if ARGV[7] == '1' then redis.call('XADD', KEYS[5], '*', 'job', ARGV[4]) end
return 1
"""
