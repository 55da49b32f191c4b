-- create stores ARGV[2] at field ARGV[1] of hash KEYS[1] unless the field
-- exists, and bumps the version KEYS[2] logging ARGV[3]:id in KEYS[3].
-- Returns {1, version} or {0, existing value}.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then return {0, cur} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {1, bump(KEYS[2], KEYS[3], ARGV[3] .. ':' .. ARGV[1])}
