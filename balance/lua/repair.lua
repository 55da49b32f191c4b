-- repair.lua: bring a subscription whose Redis state lost acknowledged
-- writes back to the archive's truth. Entries up to seq `keep` agree with
-- the archive and stay; Redis entries after it are discarded (with the
-- idempotency records they wrote); the archive's entries after it are
-- added; account, live grants and watermarks become the snapshot of the
-- archive's last entry; journals are dropped; archived event ids are
-- remembered again for producer duplicates.
-- ARGV: 3 dedupe window ms, 4 dedupe key prefix, 5 key prefix of the
-- subscription ("P{S}:"), 6 the seq the caller found ('-1': no account),
-- 7 keep, 8 snapshot (JSON), 9 and 10 the dedupe levels of tb and tb-1 the
-- caller built its dedupe KEYS from, 11 the number of journal KEYS (from
-- JOURNAL_KEYS_FROM; the dedupe sets follow them), 12 entry count, then one JSON
-- array per entry (seq, then field/value pairs), then an id count and 2 per
-- id (fingerprint, bucket bits) to remember, then the same to forget,
-- then the UNIQUE_COUNT sets' count, the KEYS index of the first, and per
-- set a count of values only the lost state counted, and those values.
-- Every check comes before the first write: a refusal changes nothing.
local JOURNAL_KEYS_FROM = 8
local window, set_prefix, base = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local found, keep = ARGV[6], tonumber(ARGV[7])
local cur = redis.call('HGET', K_ACCOUNT, 'seq') or '-1'
if cur ~= found then
  return redis.error_reply('CMCONFLICT account changed during repair (seq ' .. cur .. ', expected ' .. found .. ')')
end
local snap = cjson.decode(ARGV[8])
-- the snapshot's books must hold: the account is rebuilt from it
do
  local remaining = 0
  for id, v in pairs(snap.g or {}) do remaining = remaining + parse_grant(id, v).rem end
  local a = snap.a or {}
  local sbal, sdebt = tonumber(a.bal), tonumber(a.debt)
  if not (sbal and sdebt) then broken('snapshot bal or debt unreadable') end
  check_books(sbal, sdebt, remaining)
end
local journal_count = tonumber(ARGV[11])
-- journals hold first results of lines applied on the lost state: the
-- caller declares those of every source Redis or the snapshot knows
local journals, declared = {}, {}
for j = JOURNAL_KEYS_FROM, JOURNAL_KEYS_FROM + journal_count - 1 do declared[KEYS[j]] = true end
local srcs = redis.call('HKEYS', K_WATERMARKS)
for k in pairs(snap.w or {}) do srcs[#srcs + 1] = k end
for _, src in ipairs(srcs) do
  local k = base .. 'j:' .. src
  if not declared[k] then return redis.error_reply('CMLAYOUT journal ' .. k .. ' not in KEYS') end
  journals[#journals + 1] = k
end
local seen, close, forget = dedupe_open(window, set_prefix, ARGV[9], ARGV[10], JOURNAL_KEYS_FROM + journal_count)
if not seen then return redis.error_reply('CMLAYOUT dedupe layout changed') end

-- discard what Redis holds after keep: entries and their idempotency records
local old = redis.call('XRANGE', K_LEDGER, D(keep + 1) .. '-0', '+')
for _, e in ipairs(old) do
  local f = e[2]
  for j = 1, #f, 2 do
    if f[j] == 'key' then redis.call('HDEL', K_IDEMPOTENCY, f[j + 1]) end
  end
  redis.call('XDEL', K_LEDGER, e[1])
end
if redis.call('EXISTS', K_LEDGER) == 1 then redis.call('XSETID', K_LEDGER, D(keep) .. '-0') end

-- the archive's entries after keep, with their idempotency records
local n = tonumber(ARGV[12])
local i = 13 -- the first entry
for _ = 1, n do
  local e = cjson.decode(ARGV[i])
  i = i + 1
  local args = {'XADD', K_LEDGER, e[1] .. '-0'}
  for j = 2, #e do args[#args + 1] = e[j] end
  redis.call(unpack(args))
  for j = 2, #e - 1, 2 do
    if e[j] == 's' then
      local s = cjson.decode(e[j + 1])
      if s.i then for k, v in pairs(s.i) do redis.call('HSET', K_IDEMPOTENCY, k, v) end end
    end
  end
end

-- grants no longer live move to the finished grants (remainder 0)
local live = snap.g or {}
local prior = redis.call('HGETALL', K_GRANTS)
for j = 1, #prior, 2 do
  if not live[prior[j]] then
    local v = string.gsub(prior[j + 1], '^(%a+)|(%d+)|(%d+)|', '%1|%2|0|', 1)
    redis.call('HSET', K_FINISHED, prior[j], v)
  end
end
local function put(key, t)
  redis.call('DEL', key)
  local args = {'HSET', key}
  for k, v in pairs(t or {}) do args[#args + 1] = k; args[#args + 1] = v end
  if #args > 2 then redis.call(unpack(args)) end
end
for k in pairs(live) do redis.call('HDEL', K_FINISHED, k) end
for _, k in ipairs(journals) do redis.call('DEL', k) end
put(K_GRANTS, live)
put(K_WATERMARKS, snap.w)
put(K_ACCOUNT, snap.a)

local m = tonumber(ARGV[i])
i = i + 1
for _ = 1, m do
  seen(ARGV[i], tonumber(ARGV[i + 1]))
  i = i + 2
end
local f = tonumber(ARGV[i])
i = i + 1
for _ = 1, f do
  forget(ARGV[i], tonumber(ARGV[i + 1]))
  i = i + 2
end
-- values only the lost state counted: replayed from Kafka, they count then
local nsets, first_set = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
i = i + 2
for j = 0, nsets - 1 do
  local c = tonumber(ARGV[i])
  for k = i + 1, i + c do redis.call('SREM', KEYS[first_set + j], ARGV[k]) end
  i = i + c + 1
end
close()
load()
local change, low = finish()
return {D(bal), change, low, D(seq)}
