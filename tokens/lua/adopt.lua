-- adopt indexes a token issued before tokens had records (its value is the
-- bare customer id), so it can be listed and revoked. KEYS: tokens, ids,
-- customer index. ARGV: hash, id, record json, customer id.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[4] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
return 1
