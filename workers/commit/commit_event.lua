-- commit_event.lua: commit one call event atomically (DESIGN I1, I2).
--
-- Every key is in one shard (one hash slot), so this runs unchanged on Redis
-- Cluster. All checks happen before the first write, so a rejected event
-- leaves Redis exactly as it was.
--
-- KEYS  1 shard log            <prefix>:{s}:log
--       2 call hash            <prefix>:{s}:call:<sid>
--       3 call events stream   <prefix>:{s}:call:<sid>:events
--       4 shard active index   <prefix>:{s}:active
--       5 dialog active index  <prefix>:{s}:active:<dialog>
--       6 shard leases         <prefix>:{s}:leases
--       7 shard ended index    <prefix>:{s}:ended
--       8 dialog ended index   <prefix>:{s}:ended:dialog:<dialog>
--       9 caller ended index   <prefix>:{s}:ended:caller:<caller>
--      10 dialog+caller ended  <prefix>:{s}:ended:dialog:<dialog>:caller:<caller>
-- ARGV  1 type   2 session_id   3 seq   4 event JSON   5 dialog_name
--       6 event time (unix ms)   7 log retention (ms, 0 keeps all)
--       8 ended-call retention (ms)   9 lease (ms, 0 keeps no lease)
--       10, 11 per-type attributes:
--            call_started      caller_id, called_number
--            state_transition  to_state
--            action_executed   action
--            call_terminated   reason, final_state
--       12 caller id the KEYS 9, 10 are named by (read by call_terminated only)
--       13.. variables patch: name, JSON value pairs (value "null" removes)
-- Returns
--       {"committed", entry_id}
--       {"duplicate", entry_id}          seq already committed: the original entry
--       {"rejected", code, message}      nothing was written
--       {"caller", caller_id}            a call_terminated named another caller's
--                                        indexes than its call_started stored: nothing
--                                        was written; send it again with this caller's

local log, call, events, active, active_dialog, leases =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ended, ended_dialog, ended_caller, ended_dialog_caller = KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local etype, sid, seq_arg, data, dialog = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local seq = tonumber(seq_arg)
local event_ms = ARGV[6]
local log_retention = tonumber(ARGV[7])
local call_retention = tonumber(ARGV[8])
local lease = tonumber(ARGV[9])
local caller = ARGV[12]

local function reject(code, message)
  return {'rejected', code, message}
end

-- Stream ids compare as (ms, seq) pairs of integers.
local function id_after(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  a_ms, b_ms = tonumber(a_ms), tonumber(b_ms)
  if a_ms ~= b_ms then return a_ms > b_ms end
  return tonumber(a_seq) > tonumber(b_seq)
end

-- The entry that committed `wanted`, searched newest first: retries are of
-- recent events, so this reads a page or two.
local function committed_entry(wanted)
  local upper = '+'
  while true do
    local page = redis.call('XREVRANGE', events, upper, '-', 'COUNT', 32)
    if #page == 0 then return nil end
    for _, entry in ipairs(page) do
      local fields = entry[2]
      for i = 1, #fields, 2 do
        if fields[i] == 'seq' then
          local s = tonumber(fields[i + 1])
          if s == wanted then return entry[1] end
          if s < wanted then return nil end
          break
        end
      end
    end
    upper = '(' .. page[#page][1]
  end
end

if not seq or seq < 1 then
  return reject('invalid_seq', 'seq must be a whole number >= 1, got ' .. tostring(seq_arg))
end

local state = redis.call('HMGET', call, 'seq', 'status', 'dialog_name', 'last_id', 'caller_id')
local last_seq = tonumber(state[1])

if last_seq then
  if seq <= last_seq then
    if seq == last_seq then return {'duplicate', state[4]} end
    local id = committed_entry(seq)
    if id then return {'duplicate', id} end
    return reject('stale_seq', 'seq ' .. seq_arg .. ' of call ' .. sid ..
      ' was never committed and the call is already at seq ' .. state[1])
  end
  if etype == 'call_started' then
    return reject('already_started', 'call ' .. sid .. ' has already started')
  end
  if state[2] == 'terminated' then
    return reject('call_ended', 'call ' .. sid .. ' has already ended')
  end
  if dialog ~= state[3] and etype == 'call_terminated' then
    return reject('dialog_mismatch', 'call ' .. sid .. ' belongs to dialog ' .. state[3])
  end
  dialog = state[3]
  if etype == 'call_terminated' and caller ~= state[5] then
    -- The ended-call indexes are the stored caller's (from call_started); the
    -- keys must be named up front, so the publisher sends it again with them.
    return {'caller', state[5]}
  end
elseif etype ~= 'call_started' then
  return reject('unknown_call', 'call ' .. sid .. ' is unknown: its first event must be call_started')
end

-- All checks passed: write.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)

local fields = {'type', etype, 'session_id', sid, 'dialog', dialog, 'seq', seq_arg, 'data', data}
local id
if log_retention > 0 then
  id = redis.call('XADD', log, 'MINID', '~', string.format('%d', now_ms - log_retention), '*',
    unpack(fields))
else
  id = redis.call('XADD', log, '*', unpack(fields))
end

if last_seq then
  if not id_after(id, state[4]) then
    -- The log's clock is behind this call's last entry (a deleted log key and
    -- a clock step back): undo the one write and refuse, keeping I1.
    redis.call('XDEL', log, id)
    return reject('clock', 'the shard log id ' .. id .. ' is not after the call\'s last entry ' ..
      state[4])
  end
else
  -- A new call: drop leftovers of an expired namesake before its first entry.
  redis.call('DEL', events, call)
end
redis.call('XADD', events, id, unpack(fields))

local a, b = ARGV[10], ARGV[11]
if etype == 'call_started' then
  redis.call('HSET', call, 'session_id', sid, 'caller_id', a, 'called_number', b,
    'dialog_name', dialog, 'current_state', '', 'start_ms', event_ms, 'status', 'active',
    'state_transitions', 0, 'seq', seq_arg, 'last_id', id)
  redis.call('ZADD', active, event_ms, sid)
  redis.call('ZADD', active_dialog, event_ms, sid)
else
  redis.call('HSET', call, 'seq', seq_arg, 'last_id', id)
  if etype == 'state_transition' then
    redis.call('HSET', call, 'current_state', a)
    redis.call('HINCRBY', call, 'state_transitions', 1)
  elseif etype == 'action_executed' then
    if a == 'hold' then
      redis.call('HSET', call, 'status', 'on_hold')
    elseif a == 'resume' then
      redis.call('HSET', call, 'status', 'active')
    elseif a == 'transfer' then
      redis.call('HSET', call, 'status', 'transferring')
    end
  end
end

for i = 13, #ARGV, 2 do
  if ARGV[i + 1] == 'null' then
    redis.call('HDEL', call, 'var:' .. ARGV[i])
  else
    redis.call('HSET', call, 'var:' .. ARGV[i], ARGV[i + 1])
  end
end

if etype == 'call_terminated' then
  redis.call('HSET', call, 'status', 'terminated', 'end_ms', event_ms, 'reason', a,
    'final_state', b)
  redis.call('ZREM', active, sid)
  redis.call('ZREM', active_dialog, sid)
  redis.call('ZREM', leases, sid)
  redis.call('PEXPIRE', call, call_retention)
  redis.call('PEXPIRE', events, call_retention)
  -- The ended-call indexes, by end time, trimmed by it in the same step: what
  -- ended more than the retention before this call (never later than the
  -- clock) goes. Each index expires with its newest call, so the index of a
  -- caller who never calls again does not stay.
  local older = '(' .. string.format('%d', math.min(now_ms, tonumber(event_ms)) - call_retention)
  for _, index in ipairs({ended, ended_dialog, ended_caller, ended_dialog_caller}) do
    redis.call('ZADD', index, event_ms, sid)
    redis.call('ZREMRANGEBYSCORE', index, '-inf', older)
    redis.call('PEXPIRE', index, call_retention)
  end
elseif lease > 0 then
  redis.call('ZADD', leases, string.format('%d', now_ms + lease), sid)
end

return {'committed', id}
