-- touch records when a token was last used, unless it was revoked meanwhile.
-- KEYS: ids, used. ARGV: id, unix seconds.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
