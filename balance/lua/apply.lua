-- apply.lua: one batch of usage lines of one subscription.
-- ARGV[3] dedupe window ms, ARGV[4] source ("topic/partition" or ""),
-- ARGV[5] dedupe key prefix, then 5 per line: fingerprint (int64 as
-- decimal), bucket bits (31-bit), offset, timestamp ms, credits.
if not load() then return redis.error_reply('CMUNKNOWN unknown subscription') end
local W, src, ddp = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local committed, K_J = tonumber(ARGV[6]), KEYS[8]
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

-- (b) duplicate ids: fingerprints live in intset-encoded sets (8 bytes
-- each) keyed by arrival time bucket tb = now / W and fingerprint bits.
-- Each time bucket has a few levels of 2^level sets; when a set nears the
-- intset limit (512) new ids go to a higher level sized for the rate seen
-- so far, so sets stay small whatever the rate. A new time bucket starts
-- at the level that held the previous one at ~200 ids per set. Lookups
-- cover tb and tb-1, so an id is remembered between W and 2W. TTLs are
-- relative to the caller's clock (ARGV[1]), so skew between it and the
-- Redis clock does not matter.
local CAP = 400
local tb = math.floor(now / W)
-- meta of a time bucket: "count:level,level,..." (the last is current)
local function pm(s)
  if not s then return nil end
  local n, ls = string.match(s, '^(%d+):([%d,]+)$')
  local lv = {}
  for l in string.gmatch(ls, '%d+') do lv[#lv + 1] = tonumber(l) end
  return {n = tonumber(n), lv = lv, hi = lv[#lv]}
end
local m = redis.call('HMGET', K_DDM, D(tb), D(tb - 1))
local cur, prev = pm(m[1]), pm(m[2])
if not cur then
  local k = 0
  if prev then while k < 29 and prev.n > 200 * 2 ^ k do k = k + 1 end end
  cur = {n = 0, lv = {k}, hi = k}
  for _, f in ipairs(redis.call('HKEYS', K_DDM)) do
    if tonumber(f) < tb - 1 then redis.call('HDEL', K_DDM, f) end
  end
end
local curn = cur.n
local kp = {}
local function ddkey(t, l, b)
  local p = kp[t * 32 + l]
  if not p then p = ddp .. D(t) .. ':' .. D(l) .. ':'; kp[t * 32 + l] = p end
  return p .. D(b % 2 ^ l)
end
local ttl = D((tb + 2) * W - now)
-- sizes of the sets this call adds to: one SCARD per set, not per id
local size = {}
local function seen(fp, b)
  if prev then
    for _, l in ipairs(prev.lv) do
      if redis.call('SISMEMBER', ddkey(tb - 1, l, b), fp) == 1 then return true end
    end
  end
  for j = 1, #cur.lv - 1 do
    if redis.call('SISMEMBER', ddkey(tb, cur.lv[j], b), fp) == 1 then return true end
  end
  local k = ddkey(tb, cur.hi, b)
  if redis.call('SADD', k, fp) == 0 then return true end
  cur.n = cur.n + 1
  local c = size[k]
  if c then c = c + 1 else c = redis.call('SCARD', k) end
  size[k] = c
  if c == 1 then redis.call('PEXPIRE', k, ttl) end
  if c >= CAP and cur.hi < 29 then
    -- jump to the level the rate so far needs: ~200 ids per set by the
    -- end of the window (projection capped while the window is young)
    local el = now - tb * W
    if el < W / 64 then el = W / 64 end
    local proj = cur.n * W / el
    local nk = cur.hi + 2
    while nk < 29 and nk < cur.hi + 6 and proj > 200 * 2 ^ nk do nk = nk + 1 end
    cur.hi = nk
    cur.lv[#cur.lv + 1] = nk
  end
  return false
end

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
local i = 7
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
if cur.n ~= curn or not m[1] then
  local lvs = {}
  for j, l in ipairs(cur.lv) do lvs[j] = D(l) end
  redis.call('HSET', K_DDM, D(tb), D(cur.n) .. ':' .. table.concat(lvs, ','))
  redis.call('PEXPIRE', K_DDM, D((tb + 2) * W - now))
end
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
local res = {D(bal), D(debt), change, low, D(firstseq), D(lastseq)}
for j = 1, #out do res[#res + 1] = out[j] end
return res
