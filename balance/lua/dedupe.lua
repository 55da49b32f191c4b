-- dedupe.lua: producer-duplicate memory (see README "Exactly-once"),
-- shared by apply.lua and repair.lua. dedupe_open(window, set_prefix,
-- expect_cur, expect_prev, first) checks that the caller computed its KEYS
-- from the current layout: the levels of time buckets tb and tb-1 must be
-- expect_cur and expect_prev ("l,l", "" for none), and every set it touches
-- must be among KEYS[first..]. If the layout differs it returns nil and the
-- two metas, for the caller to answer with them; else seen(fp, bits), which
-- remembers fp and reports whether it was already there, close(), which
-- writes the time bucket's meta and returns the two metas, forget(fp, bits)
-- and seen_all(fps, bits), seen() over a call's ids in a few Redis calls.
local DEDUPE_CAP = 400 -- ids per set before a level raise, below set-max-intset-entries (512)
local DEDUPE_TARGET = 200 -- ids per set a new level is sized for
local DEDUPE_MAX_LEVEL = 29 -- at most 2^29 sets per time bucket (Go: ddMaxLevel)
local DEDUPE_RAISE_MIN, DEDUPE_RAISE_MAX = 2, 6 -- a raise adds 2 to 6 levels
local DEDUPE_YOUNG = 64 -- the rate is projected from at least window/64 of elapsed time
local DEDUPE_CHUNK = 1000 -- ids per SMISMEMBER/SADD (unpack's stack limit is ~8000)

-- a time bucket's meta: "count:level,level,..." (the last level is current)
local function parse_meta(s)
  if not s then return nil end
  local n, ls = string.match(s, '^(%d+):([%d,]+)$')
  local levels = {}
  for l in string.gmatch(ls, '%d+') do levels[#levels + 1] = tonumber(l) end
  return {n = tonumber(n), lv = levels, hi = levels[#levels]}
end

local function level_list(meta)
  if not meta then return '' end
  local t = {}
  for j, l in ipairs(meta.lv) do t[j] = D(l) end
  return table.concat(t, ',')
end

local function dedupe_open(window, set_prefix, expect_cur, expect_prev, first)
  -- (b) duplicate ids: fingerprints live in intset-encoded sets (8 bytes
  -- each) keyed by arrival time bucket tb = now / window and fingerprint
  -- bits. Each time bucket has a few levels of 2^level sets; when a set
  -- nears the intset limit the next calls put new ids in a higher level
  -- sized for the rate seen so far, so sets stay small whatever the rate. A
  -- new time bucket starts at the level that held the previous one at
  -- DEDUPE_TARGET ids per set. Lookups cover tb and tb-1, so an id is
  -- remembered between one and two windows. TTLs are relative to the
  -- caller's clock (ARGV[1]), so skew between it and Redis's does not matter.
  local tb = math.floor(now / window)
  local metas = redis.call('HMGET', K_DEDUPE_META, D(tb), D(tb - 1))
  local cur, prev = parse_meta(metas[1]), parse_meta(metas[2])
  local fresh = not cur
  if fresh then
    local k = 0
    if prev then while k < DEDUPE_MAX_LEVEL and prev.n > DEDUPE_TARGET * 2 ^ k do k = k + 1 end end
    cur = {n = 0, lv = {k}, hi = k}
  end
  if level_list(cur) ~= expect_cur or level_list(prev) ~= expect_prev then
    return nil, D(cur.n) .. ':' .. level_list(cur), metas[2] or ''
  end
  if fresh then
    for _, f in ipairs(redis.call('HKEYS', K_DEDUPE_META)) do
      if tonumber(f) < tb - 1 then redis.call('HDEL', K_DEDUPE_META, f) end
    end
  end
  local declared = {}
  for j = first, #KEYS do declared[KEYS[j]] = true end
  local count_before = cur.n
  -- set keys by time bucket and level (tb * 32 + level), then by the set
  -- number: each key is formatted and checked once per call
  local level_keys = {}
  local function set_key(t, l, bits)
    local c = level_keys[t * 32 + l]
    if not c then
      c = {mod = 2 ^ l, p = set_prefix .. D(t) .. ':' .. D(l) .. ':', k = {}}
      level_keys[t * 32 + l] = c
    end
    local b = bits % c.mod
    local k = c.k[b]
    if not k then
      k = c.p .. D(b)
      if not declared[k] then error('CMUNDECLARED dedupe set ' .. k .. ' not in KEYS') end
      c.k[b] = k
    end
    return k
  end
  local ttl = D((tb + 2) * window - now)
  -- sizes of the sets this call adds to: one SCARD per set, not per id
  local size = {}
  local full = false
  local function seen(fp, bits)
    if prev then
      for _, l in ipairs(prev.lv) do
        if redis.call('SISMEMBER', set_key(tb - 1, l, bits), fp) == 1 then return true end
      end
    end
    for j = 1, #cur.lv - 1 do
      if redis.call('SISMEMBER', set_key(tb, cur.lv[j], bits), fp) == 1 then return true end
    end
    local k = set_key(tb, cur.hi, bits)
    if redis.call('SADD', k, fp) == 0 then return true end
    cur.n = cur.n + 1
    local c = size[k]
    if c then c = c + 1 else c = redis.call('SCARD', k) end
    size[k] = c
    if c == 1 then redis.call('PEXPIRE', k, ttl) end
    if c >= DEDUPE_CAP then full = true end
    return false
  end
  -- seen_all is seen() over many ids at once (fps and bits: arrays by
  -- position), the result a table of the positions already there (an id
  -- twice in the call: its later positions). It costs one SMISMEMBER per
  -- set looked up and one SADD per set added to, not one call per id: at
  -- a low level most of a call's ids share a set.
  local function seen_all(fps, bits)
    if #fps == 1 then return {seen(fps[1], bits[1])} end -- nothing to group
    local dup, todo = {}, {}
    for i = 1, #fps do todo[i] = i end
    -- by_set groups positions by their set at (t, l), in first-seen order
    local function by_set(t, l)
      if l == 0 then -- one set: no grouping
        local k = set_key(t, 0, 0)
        return {[k] = todo}, {k}
      end
      local groups, order = {}, {}
      for _, i in ipairs(todo) do
        local k = set_key(t, l, bits[i])
        local g = groups[k]
        if not g then g = {}; groups[k] = g; order[#order + 1] = k end
        g[#g + 1] = i
      end
      return groups, order
    end
    -- member marks the positions of g whose ids key holds
    local function member(key, g)
      if #g == 1 then
        if redis.call('SISMEMBER', key, fps[g[1]]) == 1 then dup[g[1]] = true end
        return
      end
      for s = 1, #g, DEDUPE_CHUNK do
        local e = math.min(s + DEDUPE_CHUNK - 1, #g)
        local a = {}
        for j = s, e do a[#a + 1] = fps[g[j]] end
        local r = redis.call('SMISMEMBER', key, unpack(a))
        for j = s, e do if r[j - s + 1] == 1 then dup[g[j]] = true end end
      end
    end
    local function lookup(t, l)
      if #todo == 0 then return end
      local groups, order = by_set(t, l)
      for _, k in ipairs(order) do member(k, groups[k]) end
      if next(dup) then
        local rest = {}
        for _, i in ipairs(todo) do if not dup[i] then rest[#rest + 1] = i end end
        todo = rest
      end
    end
    if prev then for _, l in ipairs(prev.lv) do lookup(tb - 1, l) end end
    for j = 1, #cur.lv - 1 do lookup(tb, cur.lv[j]) end
    if #todo == 0 then return dup end
    local groups, order = by_set(tb, cur.hi)
    for _, k in ipairs(order) do
      -- an id twice in the call: the first position adds it
      local g, firsts = groups[k], groups[k]
      if #g > 1 then
        local once = {}
        firsts = {}
        for _, i in ipairs(g) do
          if once[fps[i]] then dup[i] = true else once[fps[i]] = true; firsts[#firsts + 1] = i end
        end
      end
      local added = 0
      if #firsts == 1 then
        if redis.call('SADD', k, fps[firsts[1]]) == 0 then dup[firsts[1]] = true else added = 1 end
      else
        member(k, firsts)
        for s = 1, #firsts, DEDUPE_CHUNK do
          local a = {}
          for j = s, math.min(s + DEDUPE_CHUNK - 1, #firsts) do
            if not dup[firsts[j]] then a[#a + 1] = fps[firsts[j]] end
          end
          if #a > 0 then added = added + redis.call('SADD', k, unpack(a)) end
        end
      end
      if added > 0 then
        cur.n = cur.n + added
        local c = size[k]
        if c then c = c + added else c = redis.call('SCARD', k) end
        size[k] = c
        if c == added then redis.call('PEXPIRE', k, ttl) end -- a new set
        if c >= DEDUPE_CAP then full = true end
      end
    end
    return dup
  end
  -- close raises the level for the next calls if a set filled up (this
  -- call's sets were declared by the caller), writes the meta and returns
  -- the metas of tb and tb-1 for the caller's next KEYS.
  local function close()
    if full and cur.hi < DEDUPE_MAX_LEVEL then
      -- jump to the level the rate so far needs: DEDUPE_TARGET ids per set
      -- by the end of the window (projection capped while the window is young)
      local elapsed = now - tb * window
      if elapsed < window / DEDUPE_YOUNG then elapsed = window / DEDUPE_YOUNG end
      local projected = cur.n * window / elapsed
      local nk = cur.hi + DEDUPE_RAISE_MIN
      while nk < DEDUPE_MAX_LEVEL and nk < cur.hi + DEDUPE_RAISE_MAX and projected > DEDUPE_TARGET * 2 ^ nk do nk = nk + 1 end
      cur.hi = nk
      cur.lv[#cur.lv + 1] = nk
    end
    local meta = D(cur.n) .. ':' .. level_list(cur)
    if cur.n ~= count_before or not metas[1] or full then
      redis.call('HSET', K_DEDUPE_META, D(tb), meta)
      redis.call('PEXPIRE', K_DEDUPE_META, D((tb + 2) * window - now))
    end
    return meta, metas[2] or ''
  end
  -- forget removes fp from every set of tb and tb-1 it could be in
  local function forget(fp, bits)
    local sets = {}
    if prev then for _, l in ipairs(prev.lv) do sets[#sets + 1] = {tb - 1, l} end end
    for _, l in ipairs(cur.lv) do sets[#sets + 1] = {tb, l} end
    for _, x in ipairs(sets) do redis.call('SREM', set_key(x[1], x[2], bits), fp) end
  end
  return seen, close, forget, seen_all
end
