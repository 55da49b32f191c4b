-- topup.lua: a top-up waiting for its payment. K_TOPUPS maps its id to
-- its record (JSON; amounts as strings, cjson would round numbers).
-- pending → confirming (claimed by a confirmation, which then makes the
-- purchased grant) → confirmed; pending → failed or expired, which give
-- back what the record reserved of the month's purchase limit.
-- ARGV: 3 op (create|claim|done|fail|get), 4 id, 5 now (ms); create: 6
-- fingerprint, 7 record; done: 6 seq, 7 grant; fail: 6 reason.
-- Replies {'N', record} when this call changed it, else {'R', record}.
local K_TOPUPS = KEYS[8]
local op, id = ARGV[3], ARGV[4]
acct = hash(K_ACCOUNT)
if acct.seq == nil then return redis.error_reply('CMUNKNOWN unknown subscription') end
local raw = redis.call('HGET', K_TOPUPS, id)
local rec = raw and cjson.decode(raw)
local function save(changed)
  raw = cjson.encode(rec)
  redis.call('HSET', K_TOPUPS, id, raw)
  note_topup(id, rec) -- webhooks: topup.pending, .confirmed, .failed
  return {changed, raw}
end
local function release()
  if acct.pp ~= rec.month then return end
  local q = math.max(tonumber(acct.pq or '0') - tonumber(rec.amount), 0)
  local m = math.max(tonumber(acct.pm or '0') - tonumber(rec.minor), 0)
  redis.call('HSET', K_ACCOUNT, 'pq', D(q), 'pm', D(m))
end
if op == 'create' then
  if rec then
    if rec.fp ~= ARGV[6] then return redis.error_reply('CMCONFLICT idempotency key reused with different content') end
    return {'R', raw}
  end
  rec = cjson.decode(ARGV[7])
  local amount = tonumber(rec.amount)
  local mn, mx = tonumber(acct.min or '0'), tonumber(acct.max or '0')
  if mn > 0 and amount < mn then return redis.error_reply('CMBELOWMIN top-up below the plan minimum') end
  if mx > 0 and amount > mx then return redis.error_reply('CMABOVEMAX top-up above the plan maximum') end
  local refused, count = purchase(rec.month, amount, tonumber(rec.minor))
  if refused then return redis.error_reply(refused) end
  count()
  return save('N')
end
if not rec then return redis.error_reply('CMNOTOPUP no such top-up') end
local changed = 'R'
if rec.status == 'pending' and tonumber(ARGV[5]) >= tonumber(rec.expires) then
  rec.status, rec.ended = 'expired', ARGV[5]
  release()
  save('N')
  changed = 'N'
end
if op == 'claim' and rec.status == 'pending' then
  rec.status = 'confirming'
  return save('N')
elseif op == 'done' and rec.status == 'confirming' then
  rec.status, rec.seq, rec.grant, rec.ended = 'confirmed', ARGV[6], ARGV[7], ARGV[5]
  return save('N')
elseif op == 'fail' and rec.status == 'pending' then
  rec.status, rec.reason, rec.ended = 'failed', ARGV[6], ARGV[5]
  release()
  return save('N')
end
return {changed, raw}
