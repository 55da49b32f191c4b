-- expire.lua: breakage of grants expired beyond the grace window, and
-- settlement of overage from grants now eligible.
if not load() then return redis.error_reply('CMUNKNOWN unknown subscription') end
local before_seq = seq
sweep()
settle()
local change, low = finish()
return {D(bal), change, low, D(seq - before_seq), D(seq)}
