-- restore.lua: recreate a lost account from what the archive knows.
-- ARGV: 3 customer, 4 last ledger seq, 5 debt, 6 unfunded, 7 grant count,
-- then 7 per grant (id, type, amount, remaining, effective ms, expiry ms,
-- cost basis), then a watermark count and pairs (source, offset), then the
-- plan parameters as field/value pairs. Only a lost account is restored:
-- an existing account or ledger is left alone.
if redis.call('EXISTS', K_ACCOUNT) == 1 or redis.call('EXISTS', K_LEDGER) == 1 then
  return redis.error_reply('CMCONFLICT the account or its ledger exists; only a lost account is restored')
end
local customer, lastseq = ARGV[3], tonumber(ARGV[4])
local rdebt, runf, n = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local GRANT_ARGS = 7
local i = 8 -- the first grant
local total, lastgrant, lastamt = 0, -1, 0
for _ = 1, n do
  local id, t, amt, rem, eff, exp, cost = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]),
    tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]), ARGV[i + 6]
  local gseq = tonumber(string.match(id, '^g(%d+)$'))
  if not gseq or not RANK[t] or rem < 0 or rem > amt then return redis.error_reply('CMINVALID grant ' .. id) end
  local g = {type = t, amount = amt, rem = rem, eff = eff, exp = exp, seq = gseq, cost = cost}
  if rem > 0 then redis.call('HSET', K_GRANTS, id, enc(g)) else redis.call('HSET', K_FINISHED, id, enc(g)) end
  total = total + rem
  if gseq > lastgrant then lastgrant, lastamt = gseq, amt end
  i = i + GRANT_ARGS
end
local w = tonumber(ARGV[i])
i = i + 1
for _ = 1, w do
  redis.call('HSET', K_WATERMARKS, ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', K_ACCOUNT, 'customer', customer, 'bal', D(total - rdebt), 'debt', D(rdebt), 'seq', D(lastseq),
  'low', '0', 'unf', D(runf), 'last', D(lastamt), 'created', D(now), 'restored', D(now),
  'base', D(lastseq), 'basebal', D(total - rdebt))
local args = {'HSET', K_ACCOUNT}
for j = i, #ARGV do args[#args + 1] = ARGV[j] end
if #args > 2 then redis.call(unpack(args)) end
load()
local change, low = finish()
return {D(bal), change, low}
