-- create_subscription stores a subscription unless its idempotency key or id
-- is known, checking the plan is the one it was validated against.
-- It refuses one that overlaps another of the customer's subscriptions.
-- KEYS: subs, subkeys, subfp, plansubs, custsubs, version, plans, changes, custspan.
-- ARGV: id, json, key ("" for none), fingerprint, plan id, plan json,
-- start µs, end µs (-1 open).
if redis.call('HGET', KEYS[7], ARGV[5]) ~= ARGV[6] then return {'plan_changed', ''} end
if ARGV[3] ~= '' then
  local id = redis.call('HGET', KEYS[2], ARGV[3])
  if id then return {'exists', id} end
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {'exists', ARGV[1]} end
local other = overlap(KEYS[9], ARGV[1], '', tonumber(ARGV[7]), tonumber(ARGV[8]))
if other then return {'overlap', other} end
redis.call('HSET', KEYS[9], ARGV[1], ARGV[7] .. ':' .. ARGV[8])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[3], ARGV[1]) end
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
bump(KEYS[6], KEYS[8], 'subscriptions:' .. ARGV[1])
return {'created', ARGV[1]}
