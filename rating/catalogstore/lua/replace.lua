-- replace overwrites an existing field and bumps the version; 0 when the
-- field does not exist. KEYS: hash, version, changes. ARGV: id, json, kind.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
bump(KEYS[2], KEYS[3], ARGV[3] .. ':' .. ARGV[1])
return 1
