-- journal.lua: redelivery of one source ("topic/partition"), for apply.lua.
-- The watermark (K_WATERMARKS) is the last offset applied from the source:
-- a line at or below it was applied before. The journal (K_JOURNAL, a
-- list) keeps the results of applied lines whose offsets the caller has
-- not committed yet, one record per call:
--   "firstoff lastoff firstseq lastseq #" then the lines' results
--   off,bal,unf,over,n,g1,a1,... one after the other, packed once per call
--   by cmsgpack (exact integers; no string formatting per line)
-- so a redelivered line gets its first result back (status P) and the
-- caller can archive it exactly as the first time. Records below the
-- committed offset (the next one to consume) are dropped, which bounds the
-- journal by what is in flight. With no source ("") all of this is off.
local K_JOURNAL = KEYS[8]
local JOURNAL_TTL_MS = 7 * 24 * 3600 * 1000 -- a journal left by an idle subscription expires

local journal_source
local watermark, max_offset = -1, -1
local by_offset -- journaled line by offset, read on the first replay
local replay_first_seq, replay_last_seq -- ledger seqs the replayed lines' first calls wrote
local new_items, first_offset, last_offset = {}, nil, nil -- this call's record

-- journal_open reads the source's watermark and drops the records below
-- the committed offset.
local function journal_open(source, committed)
  journal_source = source
  if source == '' then return end
  local w = redis.call('HGET', K_WATERMARKS, source)
  if w then watermark = tonumber(w) end
  max_offset = watermark
  while true do
    local head = redis.call('LINDEX', K_JOURNAL, 0)
    if not head then break end
    local lastoff = tonumber(string.match(head, '^%d+ (%d+) '))
    if lastoff and lastoff < committed then redis.call('LPOP', K_JOURNAL) else break end
  end
end

-- journal_applied: the line at off was applied by an earlier call.
local function journal_applied(off)
  return journal_source ~= '' and off <= watermark
end

-- journal_advance notes a line at off is seen now (applied or duplicate id).
local function journal_advance(off)
  if off > max_offset then max_offset = off end
end

-- journal_replay appends the first result of the line at off to out
-- ('P', then bal, unf, over, n, draws) and reports whether it had one.
local function journal_replay(off, out)
  if not by_offset then
    by_offset = {}
    for _, rec in ipairs(redis.call('LRANGE', K_JOURNAL, 0, -1)) do
      local head, fs, ls = string.match(rec, '^(%d+ %d+ (%d+) (%d+) #)')
      if head then
        local items = cmsgpack.unpack(string.sub(rec, #head + 1))
        local k = 1
        while k <= #items do
          local n = 5 + 2 * items[k + 4]
          by_offset[items[k]] = {items = items, at = k, n = n, first_seq = tonumber(fs), last_seq = tonumber(ls)}
          k = k + n
        end
      else -- a record of an earlier version: "...|off,bal,unf,over,n,g1,a1,...|..."
        fs, ls = string.match(rec, '^%d+ %d+ (%d+) (%d+)')
        for line in string.gmatch(rec, '|([^|]+)') do
          local items, k = {}, 0
          for f in string.gmatch(line, '([^,]+)') do
            k = k + 1
            if k <= 5 or k % 2 == 1 then items[k] = tonumber(f) else items[k] = f end
          end
          by_offset[items[1]] = {items = items, at = 1, n = k, first_seq = tonumber(fs), last_seq = tonumber(ls)}
        end
      end
    end
  end
  local j = by_offset[off]
  if not j then return false end
  -- off,bal,unf,over,n,g1,a1,...: all but off go back
  out[#out + 1] = 'P'
  for k = j.at + 1, j.at + j.n - 1 do out[#out + 1] = j.items[k] end
  if j.first_seq > 0 and (not replay_first_seq or j.first_seq < replay_first_seq) then replay_first_seq = j.first_seq end
  if j.last_seq > 0 and (not replay_last_seq or j.last_seq > replay_last_seq) then replay_last_seq = j.last_seq end
  return true
end

-- journal_record keeps the result of a line applied now.
local function journal_record(off, balance, unfunded, over, draws)
  if journal_source == '' then return end
  local t = new_items
  t[#t + 1] = off; t[#t + 1] = balance; t[#t + 1] = unfunded; t[#t + 1] = over; t[#t + 1] = #draws / 2
  for j = 1, #draws do t[#t + 1] = draws[j] end
  if not first_offset then first_offset = off end
  last_offset = off
end

-- journal_save_watermark moves the watermark past the lines seen now.
local function journal_save_watermark()
  if journal_source ~= '' and max_offset > watermark then
    redis.call('HSET', K_WATERMARKS, journal_source, D(max_offset))
  end
end

-- journal_push appends this call's record: its lines and the ledger
-- entries firstseq..lastseq it wrote (0 0: none).
local function journal_push(firstseq, lastseq)
  if not first_offset then return end
  if lastseq < firstseq then firstseq, lastseq = 0, 0 end
  local len = redis.call('RPUSH', K_JOURNAL, D(first_offset) .. ' ' .. D(last_offset) .. ' ' ..
    D(firstseq) .. ' ' .. D(lastseq) .. ' #' .. cmsgpack.pack(new_items))
  if len == 1 then redis.call('PEXPIRE', K_JOURNAL, D(JOURNAL_TTL_MS)) end -- once per new list
end

-- journal_seqs widens firstseq..lastseq (0 0: none) by the entries the
-- replayed lines' first calls wrote, so the caller can archive them if it
-- had not.
local function journal_seqs(firstseq, lastseq)
  if replay_first_seq then
    if firstseq == 0 or replay_first_seq < firstseq then firstseq = replay_first_seq end
    if replay_last_seq > lastseq then lastseq = replay_last_seq end
  end
  return firstseq, lastseq
end
