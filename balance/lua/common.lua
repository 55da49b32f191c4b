-- common.lua is prepended to every script. Amounts are integers of
-- micro-credits below 2^53 (credit.MaxAmount = 9e15), times are Unix ms.
-- Lua numbers are doubles: every number goes back to Redis through D()
-- (tostring would print 9e+15), and no script divides or multiplies an
-- amount except idiv below, which is exact.
local MAX = 9000000000000000
local RANK = {promotional = 0, adjustment = 1, purchased = 2}
local NEVER = 0

-- KEYS[1..7] are the subscription's keys in the order of Go's subKeys
-- (TestScriptKeyNames checks every K_ name of every script against it).
local K_ACCOUNT = KEYS[1]
local K_GRANTS = KEYS[2]
local K_FINISHED = KEYS[3]
local K_LEDGER = KEYS[4]
local K_IDEMPOTENCY = KEYS[5]
local K_WATERMARKS = KEYS[6]
local K_DEDUPE_META = KEYS[7]
local now = tonumber(ARGV[1])
local grace = tonumber(ARGV[2])

-- the state load() reads and finish() writes back: the account hash, the
-- live grants in burn-down order, and the account's balance, debt and
-- last ledger seq as numbers
local acct, grants, bal, debt, seq

local function D(n) return string.format('%d', n) end

local function hash(key)
  local r = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #r, 2 do t[r[i]] = r[i + 1] end
  return t
end

-- Burn-down order: soonest expiry first (never last), then promotional,
-- adjustment, purchased, then oldest effective-at, then creation order.
local function expkey(g) if g.exp == NEVER then return math.huge end return g.exp end
local function before(a, b)
  local ea, eb = expkey(a), expkey(b)
  if ea ~= eb then return ea < eb end
  local ra, rb = RANK[a.type], RANK[b.type]
  if ra ~= rb then return ra < rb end
  if a.eff ~= b.eff then return a.eff < b.eff end
  return a.seq < b.seq
end

local function enc(g)
  return g.type .. '|' .. D(g.amount) .. '|' .. D(g.rem) .. '|' .. D(g.eff) .. '|' .. D(g.exp) .. '|' .. D(g.seq) .. '|' .. g.cost
end

-- The books: balance = sum of the grants' remainders - debt, and no
-- remainder below zero. load() checks what it read, before the script
-- writes anything; finish() checks what the call computed, before it
-- writes that. A broken state (a hand edit of Redis, a bug) fails the call
-- with CMINVARIANT (Go: ErrInvariant); each check is one pass over the
-- grants already in memory, no extra Redis call.
local function broken(why) error({err = 'CMINVARIANT ' .. why}) end
local function check_books(balance, owed, remaining)
  if balance ~= remaining - owed then
    broken('balance ' .. D(balance) .. ' is not the remainders ' .. D(remaining) .. ' less the debt ' .. D(owed))
  end
end

-- parse_grant reads a grant's encoding (enc), refusing one that is
-- unreadable or has a negative remainder.
local function parse_grant(id, v)
  local t, amt, rem, eff, exp, gs, cost = string.match(v, '^(%a+)|(%d+)|(-?%d+)|(%d+)|(%d+)|(%d+)|(.*)$')
  if not t or not RANK[t] then broken('grant ' .. id .. ' unreadable') end
  local g = {id = id, type = t, amount = tonumber(amt), rem = tonumber(rem), eff = tonumber(eff),
    exp = tonumber(exp), seq = tonumber(gs), cost = cost}
  if g.rem < 0 then broken('grant ' .. id .. ' remaining ' .. D(g.rem) .. ' below zero') end
  return g
end

local function load()
  acct = hash(K_ACCOUNT)
  if acct.seq == nil then return false end
  bal, debt, seq = tonumber(acct.bal), tonumber(acct.debt), tonumber(acct.seq)
  if not (bal and debt and seq) then broken('account bal, debt or seq unreadable') end
  grants = {}
  local remaining = 0
  local r = redis.call('HGETALL', K_GRANTS)
  for i = 1, #r, 2 do
    local g = parse_grant(r[i], r[i + 1])
    remaining = remaining + g.rem
    grants[#grants + 1] = g
  end
  check_books(bal, debt, remaining)
  table.sort(grants, before)
  return true
end

-- Ledger entries are written by finish(), so the last entry of a call
-- can carry the snapshot of the account after it (field s).
local pending = {}
local function ledger(kind, amount, fields)
  seq = seq + 1
  local args = {'XADD', K_LEDGER, D(seq) .. '-0', 'k', kind, 'a', D(amount), 'b', D(bal), 't', D(now)}
  for i = 1, #fields do args[#args + 1] = fields[i] end
  pending[#pending + 1] = args
  return seq
end

-- Purchased and adjustment grants also cover usage dated up to the grace
-- window before they were granted (an event a moment before its top-up).
local function eligible(g, at)
  local eff = g.eff
  if g.type ~= 'promotional' then eff = eff - grace end
  return g.rem > 0 and eff <= at and (g.exp == NEVER or at < g.exp)
end

-- draw takes up to amount from grants eligible at time at, in burn-down
-- order; it returns what it could not take. The caller moves bal/debt.
local function draw(at, amount, draws)
  local left = amount
  for _, g in ipairs(grants) do
    if left == 0 then break end
    if eligible(g, at) then
      local take = g.rem
      if take > left then take = left end
      g.rem = g.rem - take
      g.dirty = true
      left = left - take
      if draws then draws[#draws + 1] = g.id; draws[#draws + 1] = take end
    end
  end
  return left
end

local function available(at)
  local s = 0
  for _, g in ipairs(grants) do if eligible(g, at) then s = s + g.rem end end
  return s - debt
end

-- Notifications (webhooks): what a change should tell — a low-balance
-- crossing, the balance reaching zero, breakage, a top-up — is recorded in
-- the account's field nq by the script that made the change, so a node
-- that dies before emitting it loses nothing (balance/notes.go drains it).
-- Records are ';'-separated 'type,seq,balance[,ref,amount]'; at most
-- NOTES_KEPT, the oldest dropped, but never a record of the call itself
-- (bounded by its grants: a sweep may expire them all). Nothing is done
-- on a call with none.
local NOTES_KEPT = 64
local notes, flushed = {}, 0
local function note(t, s, b, ref, amt)
  local r = t .. ',' .. D(s) .. ',' .. D(b)
  if ref then r = r .. ',' .. ref .. ',' .. D(amt) end
  notes[#notes + 1] = r
end
local function notes_flush()
  if #notes == 0 then return end
  local old = acct.nq or ''
  if old ~= '' then
    local keep = math.max(NOTES_KEPT - #notes, flushed)
    if keep <= 0 then
      old = ''
    else
      local _, n = string.gsub(old, ';', '') -- n + 1 records
      for _ = keep, n do old = string.sub(old, string.find(old, ';', 1, true) + 1) end
    end
    if old ~= '' then table.insert(notes, 1, old) end
  end
  local q = table.concat(notes, ';')
  redis.call('HSET', K_ACCOUNT, 'nq', q)
  acct.nq, notes, flushed = q, {}, flushed + #notes
end
-- note_balance records the crossing ('down'/'up') of a call and whether it
-- took the balance from above zero to zero or below (acct: as loaded). An
-- account's opening and its first change (seq 0 loaded: a new account
-- starts low until its first grant) tell nothing.
local function note_balance(change)
  if acct.seq ~= '0' then
    if change ~= '' then note(change == 'down' and 'L' or 'U', seq, bal) end
    if bal <= 0 and tonumber(acct.bal or '0') > 0 then note('X', seq, bal) end
  end
  notes_flush()
end
-- note_topup records a pending top-up's new status (topup.lua), with the
-- balance as loaded: topup.pending, .confirmed, .failed (failed, expired).
local TOPUP_NOTES = {pending = 'p', confirmed = 'c', failed = 'f', expired = 'x'}
local function note_topup(id, rec)
  local k = TOPUP_NOTES[rec.status]
  if not k then return end
  note(k, tonumber(rec.seq or '0') or 0, tonumber(acct.bal or '0'), id, tonumber(rec.amount) or 0)
  notes_flush()
end

-- sweep turns remainders of grants expired longer than the grace window
-- into breakage, once: the remainder is zeroed in the same script.
local function sweep()
  for _, g in ipairs(grants) do
    if g.exp ~= NEVER and g.exp + grace <= now and g.rem > 0 then
      local r = g.rem
      g.rem = 0
      g.dirty = true
      bal = bal - r
      note('E', ledger('expiry', -r, {'g', g.id}), bal, g.id, r)
    end
  end
end

-- settle pays overage debt from grants eligible now; the balance is
-- unchanged (remainders and debt shrink together).
local function settle()
  if debt > 0 then debt = draw(now, debt, nil) end
end

-- idiv is exact floor division of a non-negative integer below 2^53.
local function idiv(a, d)
  local q = math.floor(a / d)
  local r = a - q * d
  if r < 0 then q = q - 1; r = r + d elseif r >= d then q = q + 1; r = r - d end
  return q, r
end

local function threshold()
  local thr = tonumber(acct.low_abs or '0')
  local pct, last = tonumber(acct.low_pct or '0'), tonumber(acct.last or '0')
  if pct > 0 and last > 0 then
    local q, r = idiv(last, 100)
    local p = q * pct + math.floor(r * pct / 100)
    if p > thr then thr = p end
  end
  return thr
end

-- nextExpiry is the soonest expiry of a live grant (0: none), kept in the
-- account as nexp so an expiry sweep finds due subscriptions without
-- running a script on each.
local function nextExpiry()
  local n = 0
  for _, g in ipairs(grants) do
    if g.rem > 0 and g.exp ~= NEVER and (n == 0 or g.exp < n) then n = g.exp end
  end
  return n
end

-- snapshot is the state after the call's last ledger entry, archived
-- with it: account, live grants, watermarks and the idempotency record the
-- call wrote. A subscription whose Redis state lost writes is rebuilt from
-- the snapshot of its last archived entry (repair.lua). Values are strings,
-- so cjson keeps them exact.
local function snapshot(ik, iv)
  local s = {a = hash(K_ACCOUNT), g = hash(K_GRANTS), w = hash(K_WATERMARKS)}
  if ik then s.i = {[ik] = iv} end
  return cjson.encode(s)
end

-- finish writes grants and the account back and reports a low-balance
-- crossing ('down' or 'up', '' when none) and the current state. idem, if
-- given, returns the idempotency key and record of the call from the
-- crossing and low state; the caller stores it, and the snapshot carries it.
local function finish(idem)
  local remaining = 0
  for _, g in ipairs(grants) do
    if g.rem < 0 then broken('grant ' .. g.id .. ' remaining ' .. D(g.rem) .. ' below zero') end
    remaining = remaining + g.rem
  end
  check_books(bal, debt, remaining)
  for _, g in ipairs(grants) do
    if g.dirty then
      if g.rem == 0 then
        redis.call('HDEL', K_GRANTS, g.id)
        redis.call('HSET', K_FINISHED, g.id, enc(g))
      else
        redis.call('HSET', K_GRANTS, g.id, enc(g))
      end
    end
  end
  local thr = threshold()
  local low = '0'
  if thr > 0 and bal < thr then low = '1' end
  local change = ''
  if low ~= acct.low then
    if low == '1' then change = 'down' else change = 'up' end
  end
  redis.call('HSET', K_ACCOUNT, 'bal', D(bal), 'debt', D(debt), 'seq', D(seq), 'low', low, 'nexp', D(nextExpiry()))
  note_balance(change)
  if #pending > 0 then
    local ik, iv
    if idem then ik, iv = idem(change, low) end
    local last = pending[#pending]
    last[#last + 1] = 's'
    last[#last + 1] = snapshot(ik, iv)
    for _, args in ipairs(pending) do redis.call(unpack(args)) end
    pending = {}
  end
  return change, low
end
