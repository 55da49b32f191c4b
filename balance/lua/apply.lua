-- apply.lua: one batch of usage lines of one subscription; dedupe.lua
-- (duplicate ids) and journal.lua (redelivered offsets) come before it.
-- ARGV: 3 dedupe window ms, 4 source ("topic/partition" or ""), 5 dedupe
-- set prefix, 6 committed offset, 7 the ledger seq the caller last saw (0:
-- none), 8 and 9 the dedupe levels the caller built its dedupe KEYS from,
-- 10 the UNIQUE_COUNT parts (unique.lua), then LINE_ARGS per line from
-- FIRST_LINE_ARG: fingerprint (int64 as decimal), bucket bits (31-bit),
-- offset, timestamp ms, credits.
-- KEYS: the subscription's, K_JOURNAL, the dedupe sets declared, then the
-- UNIQUE_COUNT sets.
local DEDUPE_KEYS_FROM = 9
local FIRST_LINE_ARG, LINE_ARGS = 11, 5
local window, source, set_prefix = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local committed, caller_seq = tonumber(ARGV[6]), tonumber(ARGV[7])

if not load() then return redis.error_reply('CMUNKNOWN unknown subscription') end
-- A ledger behind what the caller saw means Redis lost acknowledged
-- writes: apply nothing on that state; the caller repairs it first.
if seq < caller_seq then
  return redis.error_reply('CMBEHIND ledger at seq ' .. D(seq) .. ', caller saw ' .. ARGV[7])
end
-- the dedupe sets the caller declared must be those of the current layout;
-- if not, nothing is done and the caller gets the layout to try again
local dd = {dedupe_open(window, set_prefix, ARGV[8], ARGV[9], DEDUPE_KEYS_FROM)}
if not dd[1] then return {'L', dd[2], dd[3]} end
local dedupe_close, seen_all = dd[2], dd[4]
local firstseq = seq + 1
sweep()
settle()
journal_open(source, committed)

-- Usage goes to the ledger as one entry per call (sum, event count,
-- unfunded sum, offsets), split only to keep each sum within MAX.
-- (offsets kept as numbers, formatted once per entry)
local usage = {sum = 0, n = 0, unfunded = 0, first = nil, last = nil}
local function flush_usage()
  if usage.n == 0 then return end
  ledger('usage', -usage.sum, {'n', D(usage.n), 'u', D(usage.unfunded), 'r', source .. ':' .. D(usage.first) .. '-' .. D(usage.last)})
  if usage.unfunded > 0 then redis.call('HINCRBY', K_ACCOUNT, 'unf', D(usage.unfunded)) end
  usage.sum, usage.n, usage.unfunded, usage.first = 0, 0, 0, nil
end

-- charge draws a line's credits at its draw time (its timestamp clamped to
-- [now - grace, now]), moves bal and debt and counts it in the usage
-- entry; it returns the line's unfunded and overage amounts and its draws
-- (grant id, amount, ...).
local policy = acct.policy
local function charge(off, ts, credits)
  local at = ts
  if at > now then at = now end
  if at < now - grace then at = now - grace end
  local draws = {}
  local left = draw(at, credits, draws)
  local funded = credits - left
  local over = 0
  if left > 0 and policy == 'overage' then
    -- the balance may not go below -MAX; beyond that usage is unfunded
    over = bal - funded + MAX
    if over > MAX - debt then over = MAX - debt end
    if over > left then over = left end
    over = debt_limit(over)
    if over < 0 then over = 0 end
    debt = debt + over
  end
  local unfunded = left - over
  local delta = funded + over
  if usage.sum + delta > MAX or usage.unfunded + unfunded > MAX then flush_usage() end
  bal = bal - delta
  usage.sum, usage.n, usage.unfunded = usage.sum + delta, usage.n + 1, usage.unfunded + unfunded
  if not usage.first then usage.first = off end
  usage.last = off
  return unfunded, over, draws
end

-- the ids of the lines not redelivered are looked up and remembered at
-- once, in line order (the watermark does not move until the end)
local fps, fbits, fat = {}, {}, {}
for i = FIRST_LINE_ARG, #ARGV, LINE_ARGS do
  if not journal_applied(tonumber(ARGV[i + 2])) then
    local n = #fps + 1
    fps[n], fbits[n], fat[i] = ARGV[i], tonumber(ARGV[i + 1]), n
  end
end
local dup = seen_all(fps, fbits)
-- per line: 'O' redelivered, 'P' redelivered with its first result, 'I'
-- duplicate id, 'A' applied; 'P' and 'A' are followed by balance after,
-- unfunded, overage, draw count and the draws. The common case, a line
-- drawn wholly from one grant, is 'a' and the grant: the caller knows its
-- credits, and its balance after from the balance before the lines (the reply's
-- ninth item) less what the lines before it drew (two reply items instead of seven).
-- the reply: 8 head items filled in at the end, the balance before the
-- lines, then the lines' items (appended in place, not copied)
local out = {'', '', '', '', '', '', '', '', bal}
for i = FIRST_LINE_ARG, #ARGV, LINE_ARGS do
  local off = tonumber(ARGV[i + 2])
  local ts, credits = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  if journal_applied(off) then
    if not journal_replay(off, out) then out[#out + 1] = 'O' end
  else
    journal_advance(off)
    if dup[fat[i]] then
      out[#out + 1] = 'I'
    else
      local unfunded, over, draws = unique_charge(charge, (i - FIRST_LINE_ARG) / LINE_ARGS + 1, off, ts, credits)
      if #draws == 2 and unfunded == 0 and over == 0 and draws[1] ~= '~u' then
        out[#out + 1] = 'a'
        out[#out + 1] = draws[1]
      else
        -- integers (< 2^53) go back to Redis exactly as integer replies
        out[#out + 1] = 'A'
        out[#out + 1] = bal
        out[#out + 1] = unfunded
        out[#out + 1] = over
        out[#out + 1] = #draws / 2
        for j = 1, #draws do out[#out + 1] = draws[j] end
      end
      journal_record(off, bal, unfunded, over, draws)
    end
  end
end
flush_usage()
journal_save_watermark()
local cur_meta, prev_meta = dedupe_close()
settle()
local change, low = finish()
local lastseq = seq
journal_push(firstseq, lastseq)
if lastseq < firstseq then firstseq, lastseq = 0, 0 end
firstseq, lastseq = journal_seqs(firstseq, lastseq)
out[1], out[2], out[3], out[4] = D(bal), D(debt), change, low
out[5], out[6], out[7], out[8] = D(firstseq), D(lastseq), cur_meta, prev_meta
return out
