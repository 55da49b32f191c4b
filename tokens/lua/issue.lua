-- issue stores a new token's record and indexes it by id and by customer.
-- KEYS: tokens, ids, customer index. ARGV: hash, id, record json.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
return 1
