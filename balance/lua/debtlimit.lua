-- debtlimit.lua: the optional hard limit on overage debt (account field
-- dlim, micro-credits; absent or empty: no limit). apply.lua's charge()
-- calls debt_limit on a line's overage: what would take the debt past the
-- limit is unfunded instead. Inside the script, so it is exact under any
-- concurrency.
local function debt_limit(over)
  local lim = tonumber(acct.dlim or '')
  if lim == nil or over <= 0 then return over end
  local room = lim - debt
  if room < 0 then room = 0 end
  if over > room then return room end
  return over
end
