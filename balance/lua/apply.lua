-- apply.lua: one batch of usage lines of one subscription.
-- ARGV[3] dedupe window ms, ARGV[4] source ("topic/partition" or ""),
-- ARGV[5] dedupe key prefix, ARGV[6] committed offset, ARGV[7] the ledger
-- seq the caller last saw (0: none), ARGV[8] and ARGV[9] the dedupe levels
-- the caller built KEYS[9..] from (see dedupe.lua), then 5 per line:
-- fingerprint (int64 as decimal), bucket bits (31-bit), offset, timestamp
-- ms, credits. KEYS[8] is the journal of the source.
if not load() then return redis.error_reply('CMUNKNOWN unknown subscription') end
-- A ledger behind what the caller saw means Redis lost acknowledged
-- writes: apply nothing on that state; the caller repairs it first.
if seq < tonumber(ARGV[7]) then
  return redis.error_reply('CMBEHIND ledger at seq ' .. D(seq) .. ', caller saw ' .. ARGV[7])
end
local W, src, ddp = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local committed, K_J = tonumber(ARGV[6]), KEYS[8]
-- the dedupe sets the caller declared must be those of the current layout;
-- if not, nothing is done and the caller gets the layout to try again
local seen, dedupe_close, forget = dedupe_open(W, ddp, ARGV[8], ARGV[9], 9)
if not seen then return {'L', dedupe_close, forget} end
local firstseq = seq + 1
sweep()
settle()

-- (a) redelivery: offsets at or below the watermark were applied.
local wm = -1
if src ~= '' then
  local w = redis.call('HGET', K_WM, src)
  if w then wm = tonumber(w) end
end
local maxoff = wm

-- The journal keeps, per source, the results of applied lines whose offsets
-- the caller has not yet committed, one record per call:
-- "firstoff lastoff firstseq lastseq|off,bal,unf,over,n,g1,a1,...|...".
-- A redelivered line gets its first result back (status P), so the caller
-- can archive it exactly as the first time; records at or below the
-- committed offset are dropped here, which bounds the journal by what is in
-- flight. ARGV[6] is the committed offset: the next one to consume.
if src ~= '' then
  while true do
    local h = redis.call('LINDEX', K_J, 0)
    if not h then break end
    local lo = tonumber(string.match(h, '^%d+ (%d+) '))
    if lo and lo < committed then redis.call('LPOP', K_J) else break end
  end
end
local J, jf, jl
local function journaled(off)
  if not J then
    J = {}
    for _, rec in ipairs(redis.call('LRANGE', K_J, 0, -1)) do
      local fs, ls = string.match(rec, '^%d+ %d+ (%d+) (%d+)')
      for line in string.gmatch(rec, '|([^|]+)') do
        local o = tonumber(string.match(line, '^(%d+),'))
        J[o] = {line = line, fs = tonumber(fs), ls = tonumber(ls)}
      end
    end
  end
  return J[off]
end
local jrec = {}

-- Usage goes to the ledger as one entry per call (sum, event count,
-- unfunded sum, offsets), split only to keep each sum within MAX.
local acc, cnt, unf, first, last = 0, 0, 0, '', ''
local function flush()
  if cnt == 0 then return end
  ledger('usage', -acc, {'n', D(cnt), 'u', D(unf), 'r', src .. ':' .. first .. '-' .. last})
  if unf > 0 then redis.call('HINCRBY', K_ACCT, 'unf', D(unf)) end
  acc, cnt, unf, first = 0, 0, 0, ''
end

local out = {}
local policy = A.policy
local i = 10
while i <= #ARGV do
  local fp, b, off = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local ts, cr = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  i = i + 5
  if src ~= '' and off <= wm then
    local j = journaled(off)
    if j then
      -- off,bal,unf,over,n,draws...: the first result, replayed
      out[#out + 1] = 'P'
      local k = 0
      for f in string.gmatch(j.line, '([^,]+)') do
        k = k + 1
        if k > 1 then
          if k <= 5 or k % 2 == 1 then out[#out + 1] = tonumber(f) else out[#out + 1] = f end
        end
      end
      if j.fs > 0 and (not jf or j.fs < jf) then jf = j.fs end
      if j.ls > 0 and (not jl or j.ls > jl) then jl = j.ls end
    else
      out[#out + 1] = 'O'
    end
  else
    if off > maxoff then maxoff = off end
    if seen(fp, b) then
      out[#out + 1] = 'I'
    else
      local at = ts
      if at > now then at = now end
      if at < now - grace then at = now - grace end
      local draws = {}
      local left = draw(at, cr, draws)
      local funded = cr - left
      local over = 0
      if left > 0 and policy == 'overage' then
        -- the balance may not go below -MAX; beyond that usage is unfunded
        over = bal - funded + MAX
        if over > MAX - debt then over = MAX - debt end
        if over > left then over = left end
        if over < 0 then over = 0 end
        debt = debt + over
      end
      local unfunded = left - over
      local delta = funded + over
      if acc + delta > MAX or unf + unfunded > MAX then flush() end
      bal = bal - delta
      acc, cnt, unf = acc + delta, cnt + 1, unf + unfunded
      if first == '' then first = D(off) end
      last = D(off)
      -- integers (< 2^53) go back to Redis exactly as integer replies
      out[#out + 1] = 'A'
      out[#out + 1] = bal
      out[#out + 1] = unfunded
      out[#out + 1] = over
      out[#out + 1] = #draws / 2
      for j = 1, #draws do out[#out + 1] = draws[j] end
      if src ~= '' then
        local rec = {D(off), D(bal), D(unfunded), D(over), D(#draws / 2)}
        for j = 1, #draws, 2 do rec[#rec + 1] = draws[j]; rec[#rec + 1] = D(draws[j + 1]) end
        jrec[#jrec + 1] = table.concat(rec, ',')
      end
    end
  end
end
flush()
if src ~= '' and maxoff > wm then redis.call('HSET', K_WM, src, D(maxoff)) end
local curmeta, prevmeta = dedupe_close()
settle()
local change, low = finish()
local lastseq = seq
if #jrec > 0 then
  local fs, ls = firstseq, lastseq
  if ls < fs then fs, ls = 0, 0 end
  local len = redis.call('RPUSH', K_J, string.match(jrec[1], '^(%d+)') .. ' ' .. last .. ' ' .. D(fs) .. ' ' .. D(ls) .. '|' .. table.concat(jrec, '|'))
  -- a journal left by an idle subscription expires; set once per new list
  if len == 1 then redis.call('PEXPIRE', K_J, '604800000') end
end
if lastseq < firstseq then firstseq = 0; lastseq = 0 end
-- a replay also reports the ledger entries its first call wrote, so the
-- caller can archive them if it had not
if jf then
  if firstseq == 0 or jf < firstseq then firstseq = jf end
  if jl > lastseq then lastseq = jl end
end
local res = {D(bal), D(debt), change, low, D(firstseq), D(lastseq), curmeta, prevmeta}
for j = 1, #out do res[#res + 1] = out[j] end
return res
