-- open.lua: create or update a subscription's account.
-- ARGV: 3 customer, then field/value pairs of plan parameters.
local customer = ARGV[3]
local cust = redis.call('HGET', K_ACCOUNT, 'customer')
if cust and cust ~= customer then return redis.error_reply('CMCONFLICT subscription belongs to another customer') end
if not cust then
  redis.call('HSET', K_ACCOUNT, 'customer', customer, 'bal', '0', 'debt', '0', 'seq', '0', 'low', '0',
    'unf', '0', 'last', '0', 'created', D(now))
end
-- load() checks the books before the plan parameters change
load()
local args = {'HSET', K_ACCOUNT}
for i = 4, #ARGV, 2 do
  args[#args + 1] = ARGV[i]
  args[#args + 1] = ARGV[i + 1]
  acct[ARGV[i]] = ARGV[i + 1]
end
redis.call(unpack(args))
sweep()
settle()
local change, low = finish()
return {D(bal), change, low}
