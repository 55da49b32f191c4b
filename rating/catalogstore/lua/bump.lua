-- bump increments the catalog version and logs the change in the change log,
-- a sorted set scored by version of "<version>:<kind>:<id>", keeping the
-- newest MAX_CHANGES entries (a rater further behind reloads fully).
-- MAX_CHANGES is defined by the Go side (maxChanges) in a line before this.
local function bump(vkey, ckey, change)
  local v = redis.call('INCR', vkey)
  redis.call('ZADD', ckey, v, v .. ':' .. change)
  redis.call('ZREMRANGEBYRANK', ckey, 0, -(MAX_CHANGES + 1))
  return v
end
