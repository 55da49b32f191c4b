-- purchase.lua: the month's purchase limit (plan setting). The account
-- hash counts what was bought (or reserved by a pending top-up) in the
-- month pp: pq micro-credits, pm money in minor units; plc and plm are
-- the limits (0: none). purchase() refuses a top-up beyond either, or
-- returns the function that counts it (called once the top-up is made).
local function purchase(month, amount, minor)
  local q, m = 0, 0
  if acct.pp == month then q, m = tonumber(acct.pq or '0'), tonumber(acct.pm or '0') end
  local lq, lm = tonumber(acct.plc or '0'), tonumber(acct.plm or '0')
  if lq > 0 and q + amount > lq then return 'CMPURCHASELIMIT credits|' .. D(lq) .. '|' .. D(q) .. '|' .. month end
  if lm > 0 and m + minor > lm then return 'CMPURCHASELIMIT charge|' .. D(lm) .. '|' .. D(m) .. '|' .. month end
  return nil, function()
    redis.call('HSET', K_ACCOUNT, 'pp', month, 'pq', D(math.min(q + amount, MAX)), 'pm', D(math.min(m + minor, MAX)))
  end
end
