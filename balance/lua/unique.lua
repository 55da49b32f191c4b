-- unique.lua: UNIQUE_COUNT memory (README "UNIQUE_COUNT"), used by
-- apply.lua. ARGV[UNIQUE_ARG] is '' or a JSON array of parts {line, KEYS
-- index of the period's set, value, credits, keep-until ms}: a part's
-- credits are charged only the first time its value enters the set, in the
-- same call as the charge, so a redelivered or duplicate line (which never
-- reaches charge) cannot add or count a value twice.
local UNIQUE_ARG = 10
local unique_parts = {}
if ARGV[UNIQUE_ARG] ~= '' then
  for _, p in ipairs(cjson.decode(ARGV[UNIQUE_ARG])) do
    local l = unique_parts[p[1]] or {}
    l[#l + 1] = p
    unique_parts[p[1]] = l
  end
end

-- unique_charge is charge(off, ts, credits) less the parts of line ln whose
-- value the period already holds (or whose memory has expired: a value that
-- late is not charged rather than maybe charged twice); their bit mask goes
-- back as the pseudo-draw '~u' (Go: LineResult.Repeats), journaled with
-- the line's result.
local function unique_charge(charge, ln, off, ts, credits)
  local parts = unique_parts[ln]
  if not parts then return charge(off, ts, credits) end
  local rep, mask, bit = 0, 0, 1
  for _, p in ipairs(parts) do
    local key, keep = KEYS[p[2]], tonumber(p[5])
    if keep <= now or redis.call('SADD', key, p[3]) == 0 then
      rep, mask = rep + tonumber(p[4]), mask + bit
    else
      redis.call('PEXPIRE', key, D(keep - now)) -- relative to the caller's clock, as dedupe's
    end
    bit = bit * 2
  end
  local unfunded, over, draws = charge(off, ts, credits - rep)
  if mask > 0 then draws[#draws + 1] = '~u'; draws[#draws + 1] = mask end
  return unfunded, over, draws
end
