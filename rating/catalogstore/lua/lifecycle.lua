-- lifecycle ends (or re-ends) a subscription and optionally creates its
-- successor of a plan change, in one step, refusing overlaps.
-- KEYS: subs, subkeys, subfp, plansubs (successor's plan), custsubs, version,
-- plans, changes, custspan.
-- ARGV: 1 id, 2 stored json expected, 3 new json, 4 start µs, 5 end µs,
-- 6 successor id ("" none), 7 its json, 8 its start µs, 9 its end µs,
-- 10 plan id, 11 plan json, 12 idempotency key, 13 fingerprint.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return {'changed', ''} end
local nid = ARGV[6]
if nid ~= '' then
  if redis.call('HGET', KEYS[7], ARGV[10]) ~= ARGV[11] then return {'plan_changed', ''} end
  if ARGV[12] ~= '' then
    local id = redis.call('HGET', KEYS[2], ARGV[12])
    if id then return {'exists', id} end
  end
  if redis.call('HEXISTS', KEYS[1], nid) == 1 then return {'exists', nid} end
end
local other = overlap(KEYS[9], ARGV[1], nid, tonumber(ARGV[4]), tonumber(ARGV[5]))
if other then return {'overlap', other} end
if nid ~= '' then
  other = overlap(KEYS[9], ARGV[1], nid, tonumber(ARGV[8]), tonumber(ARGV[9]))
  if other then return {'overlap', other} end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[9], ARGV[1], ARGV[4] .. ':' .. ARGV[5])
bump(KEYS[6], KEYS[8], 'subscriptions:' .. ARGV[1])
if nid ~= '' then
  redis.call('HSET', KEYS[1], nid, ARGV[7])
  redis.call('HSET', KEYS[3], nid, ARGV[13])
  if ARGV[12] ~= '' then redis.call('HSET', KEYS[2], ARGV[12], nid) end
  redis.call('SADD', KEYS[4], nid)
  redis.call('SADD', KEYS[5], nid)
  redis.call('HSET', KEYS[9], nid, ARGV[8] .. ':' .. ARGV[9])
  bump(KEYS[6], KEYS[8], 'subscriptions:' .. nid)
end
return {'ok', nid}
