-- overlap returns the id of a subscription in the customer's span hash
-- (id -> "startUs:endUs", endUs -1 = open) that shares an instant with
-- [s, e) (e -1 = open), skipping skip1 and skip2; nil when none does. An
-- empty span (cancelled before its start) overlaps nothing.
local function overlap(span, skip1, skip2, s, e)
  local all = redis.call('HGETALL', span)
  for i = 1, #all, 2 do
    local id = all[i]
    if id ~= skip1 and id ~= skip2 then
      local a, b = string.match(all[i + 1], '^(%-?%d+):(%-?%d+)$')
      a, b = tonumber(a), tonumber(b)
      local empty = b >= 0 and b <= a
      if not empty and (b < 0 or s < b) and (e < 0 or a < e) then return id end
    end
  end
  return nil
end
