-- dedupe.lua: producer-duplicate memory (see README "Exactly-once"),
-- shared by apply.lua and repair.lua. dedupe_open(W, ddp, expcur, expprev,
-- first) checks that the caller computed its KEYS from the current layout:
-- the levels of time buckets tb and tb-1 must be expcur and expprev ("l,l",
-- "" for none), and every set it touches must be among KEYS[first..]. If
-- the layout differs it returns nil and the two metas, for the caller to
-- answer with them; else seen(fp, bits), which remembers fp and reports
-- whether it was already there, close(), which writes the time bucket's
-- meta and returns the two metas, and forget(fp, bits).
local DEDUPE_CAP = 400 -- ids per intset, below set-max-intset-entries (512)
local function dedupe_open(W, ddp, expcur, expprev, first)
  -- (b) duplicate ids: fingerprints live in intset-encoded sets (8 bytes
  -- each) keyed by arrival time bucket tb = now / W and fingerprint bits.
  -- Each time bucket has a few levels of 2^level sets; when a set nears the
  -- intset limit (512) the next calls put new ids in a higher level sized
  -- for the rate seen so far, so sets stay small whatever the rate. A new
  -- time bucket starts at the level that held the previous one at ~200 ids
  -- per set. Lookups cover tb and tb-1, so an id is remembered between W
  -- and 2W. TTLs are relative to the caller's clock (ARGV[1]), so skew
  -- between it and the Redis clock does not matter.
  local tb = math.floor(now / W)
  -- meta of a time bucket: "count:level,level,..." (the last is current)
  local function pm(s)
    if not s then return nil end
    local n, ls = string.match(s, '^(%d+):([%d,]+)$')
    local lv = {}
    for l in string.gmatch(ls, '%d+') do lv[#lv + 1] = tonumber(l) end
    return {n = tonumber(n), lv = lv, hi = lv[#lv]}
  end
  local function lvs(x)
    if not x then return '' end
    local t = {}
    for j, l in ipairs(x.lv) do t[j] = D(l) end
    return table.concat(t, ',')
  end
  local m = redis.call('HMGET', K_DDM, D(tb), D(tb - 1))
  local cur, prev = pm(m[1]), pm(m[2])
  local fresh = not cur
  if fresh then
    local k = 0
    if prev then while k < 29 and prev.n > 200 * 2 ^ k do k = k + 1 end end
    cur = {n = 0, lv = {k}, hi = k}
  end
  if lvs(cur) ~= expcur or lvs(prev) ~= expprev then
    return nil, D(cur.n) .. ':' .. lvs(cur), m[2] or ''
  end
  if fresh then
    for _, f in ipairs(redis.call('HKEYS', K_DDM)) do
      if tonumber(f) < tb - 1 then redis.call('HDEL', K_DDM, f) end
    end
  end
  local decl = {}
  for j = first, #KEYS do decl[KEYS[j]] = true end
  local curn = cur.n
  local kp = {}
  local function ddkey(t, l, b)
    local p = kp[t * 32 + l]
    if not p then p = ddp .. D(t) .. ':' .. D(l) .. ':'; kp[t * 32 + l] = p end
    local k = p .. D(b % 2 ^ l)
    if not decl[k] then error('CMUNDECLARED dedupe set ' .. k .. ' not in KEYS') end
    return k
  end
  local ttl = D((tb + 2) * W - now)
  -- sizes of the sets this call adds to: one SCARD per set, not per id
  local size = {}
  local full = false
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
    if c >= DEDUPE_CAP then full = true end
    return false
  end
  -- close raises the level for the next calls if a set filled up (this
  -- call's sets were declared by the caller), writes the meta and returns
  -- the metas of tb and tb-1 for the caller's next KEYS.
  local function close()
    if full and cur.hi < 29 then
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
    local meta = D(cur.n) .. ':' .. lvs(cur)
    if cur.n ~= curn or not m[1] or full then
      redis.call('HSET', K_DDM, D(tb), meta)
      redis.call('PEXPIRE', K_DDM, D((tb + 2) * W - now))
    end
    return meta, m[2] or ''
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
