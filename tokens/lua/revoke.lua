-- revoke deletes a customer's token by id. KEYS: tokens, ids, customer index,
-- used. ARGV: id. Returns 0 when the customer has no such token.
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then return 0 end
local h = redis.call('HGET', KEYS[2], ARGV[1])
if h then redis.call('HDEL', KEYS[1], h) end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
