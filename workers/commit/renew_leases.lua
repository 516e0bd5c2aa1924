-- renew_leases.lua: extend a worker's leases on calls of one shard (DESIGN I7).
--
-- The expiry is computed from the Redis clock, the same clock the commit
-- script and the reaper use, so a worker's clock never matters.
-- XX: a call that has ended (its lease removed by call_terminated) is never
-- given a lease again. GT: a renewal never shortens a lease.
--
-- KEYS  1 shard leases   <prefix>:{s}:leases
-- ARGV  1 lease (ms)   2.. session ids
-- Returns the number of leases extended.

local now = redis.call('TIME')
local expiry = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
local renewed = 0
for i = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'GT', 'CH', string.format('%d', expiry),
    ARGV[i])
end
return renewed
