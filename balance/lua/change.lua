-- change.lua: a grant, top-up or adjustment, idempotent by key.
-- ARGV: 3 key, 4 request fingerprint, 5 op (grant|deduct), 6 kind
-- (grant|topup|adjust), 7 grant type, 8 amount, 9 effective ms, 10 expires
-- ms (0 never), 11 cost basis, 12 force (1|0), 13 top-up terms
-- (value|month|charge in minor units|reserved, top-up only), 14 most live grants, then ledger field/value pairs.
local LEDGER_FIELDS_ARG = 15
local key, fp, op, kind = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local gtype, amount, eff, exp = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local cost, force, expect, maxg = ARGV[11], ARGV[12], ARGV[13], tonumber(ARGV[14])
if not load() then return redis.error_reply('CMUNKNOWN unknown subscription') end
local prior = redis.call('HGET', K_IDEMPOTENCY, key)
if prior then
  local pfp, rest = string.match(prior, '^([^|]*)|(.*)$')
  if pfp ~= fp then return redis.error_reply('CMCONFLICT idempotency key reused with different content') end
  return {'R', rest}
end
local count_purchase -- purchase.lua: counts the top-up in its month
if kind == 'topup' then
  local value, month, minor, reserved = string.match(expect, '^(.*)|(%d+%-%d+)|(%d+)|([01])$')
  if (acct.value or '') ~= value then return redis.error_reply('CMSTALE credit value changed') end
  local mn, mx = tonumber(acct.min or '0'), tonumber(acct.max or '0')
  if reserved ~= '1' and mn > 0 and amount < mn then return redis.error_reply('CMBELOWMIN top-up below the plan minimum') end
  if reserved ~= '1' and mx > 0 and amount > mx then return redis.error_reply('CMABOVEMAX top-up above the plan maximum') end
  if reserved ~= '1' then
    local refused
    refused, count_purchase = purchase(month, amount, tonumber(minor))
    if refused then return redis.error_reply(refused) end
  end
end
-- the entry names its idempotency key (archived; a repair that discards
-- the entry drops the key's record with it)
local extra = {'key', key}
for i = LEDGER_FIELDS_ARG, #ARGV do extra[#extra + 1] = ARGV[i] end
local gid, draws = '', {}
if op == 'grant' then
  -- remainders (bal + debt) stay within MAX, so every balance does
  if bal + debt + amount > MAX then return redis.error_reply('CMRANGE balance would exceed the maximum') end
  sweep()
  -- live grants are capped, so every script's scan and sort stay bounded;
  -- the refusal persists the sweep (finish) and answers as data
  local live = 0
  for _, g in ipairs(grants) do if g.rem > 0 then live = live + 1 end end
  if live >= maxg then
    local change, low = finish()
    return {'E', 'CMTOOMANY', D(live), change, low}
  end
  gid = 'g' .. D(seq + 1)
  bal = bal + amount
  extra[#extra + 1] = 'g'; extra[#extra + 1] = gid
  extra[#extra + 1] = 'type'; extra[#extra + 1] = gtype
  ledger(kind, amount, extra)
  if kind == 'topup' then note('T', seq, bal, gid, amount) end -- webhooks: topup.created
  grants[#grants + 1] = {id = gid, type = gtype, amount = amount, rem = amount, eff = eff, exp = exp, seq = seq, cost = cost, dirty = true}
  table.sort(grants, before)
  -- lastg/lastb: the latest grant's seq and the balance it left (auto-recharge's crossing)
  redis.call('HSET', K_ACCOUNT, 'last', D(amount), 'lastg', D(seq), 'lastb', D(bal))
  acct.last = D(amount)
  settle()
else
  sweep()
  settle()
  local avail = available(now)
  -- refusals after the sweep still persist it (finish) and answer as data
  if amount > bal + MAX or amount > MAX - debt then
    local change, low = finish()
    return {'E', 'CMRANGE', D(avail), change, low}
  end
  if amount > avail and force ~= '1' then
    local change, low = finish()
    return {'E', 'CMINSUFFICIENT', D(avail), change, low}
  end
  debt = debt + draw(now, amount, draws)
  bal = bal - amount
  ledger(kind, -amount, extra)
end
for j = 2, #draws, 2 do draws[j] = D(draws[j]) end
local res
finish(function(change, low)
  res = D(seq) .. '|' .. gid .. '|' .. D(bal) .. '|' .. change .. '|' .. low .. '|' .. table.concat(draws, ',')
  return key, fp .. '|' .. res
end)
redis.call('HSET', K_IDEMPOTENCY, key, fp .. '|' .. res)
if count_purchase then count_purchase() end
return {'N', res}
