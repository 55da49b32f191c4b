-- dedupe.lua: producer-duplicate memory (see README "Exactly-once"),
-- shared by apply.lua and repair.lua. dedupe_open returns seen(fp, bits),
-- which remembers fp and reports whether it was already there, close(),
-- which writes the time bucket's meta, and forget(fp, bits).
local DEDUPE_CAP = 400 -- ids per intset, below set-max-intset-entries (512)
local function dedupe_open(W, ddp)
  -- (b) duplicate ids: fingerprints live in intset-encoded sets (8 bytes
  -- each) keyed by arrival time bucket tb = now / W and fingerprint bits.
  -- Each time bucket has a few levels of 2^level sets; when a set nears the
  -- intset limit (512) new ids go to a higher level sized for the rate seen
  -- so far, so sets stay small whatever the rate. A new time bucket starts
  -- at the level that held the previous one at ~200 ids per set. Lookups
  -- cover tb and tb-1, so an id is remembered between W and 2W. TTLs are
  -- relative to the caller's clock (ARGV[1]), so skew between it and the
  -- Redis clock does not matter.
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
    if c >= DEDUPE_CAP and cur.hi < 29 then
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
  local function close()
    if cur.n ~= curn or not m[1] then
      local lvs = {}
      for j, l in ipairs(cur.lv) do lvs[j] = D(l) end
      redis.call('HSET', K_DDM, D(tb), D(cur.n) .. ':' .. table.concat(lvs, ','))
      redis.call('PEXPIRE', K_DDM, D((tb + 2) * W - now))
    end
  end
  -- forget removes fp from every set of tb and tb-1 it could be in
  local function forget(fp, b)
    local lvs = {}
    if prev then for _, l in ipairs(prev.lv) do lvs[#lvs + 1] = {tb - 1, l} end end
    for _, l in ipairs(cur.lv) do lvs[#lvs + 1] = {tb, l} end
    for _, x in ipairs(lvs) do redis.call('SREM', ddkey(x[1], x[2], b), fp) end
  end
  return seen, close, forget
end
