"""The Lua scripts of the lossless Redis broker: each one step that must not be split by a failure.

Dramatiq's `RedisBroker` runs one script, `dispatch.lua`, for its own commands (enqueue, fetch,
ack, nack, requeue, maintenance); `LosslessRedisBroker` keeps those for what they do well and runs
these for what must happen atomically and was not there. They use the same key layout as
`dispatch.lua`, and every script takes the namespace as ARGV[1]:

- `<ns>:<queue>`: the list of message ids waiting; `<ns>:<queue>.msgs`: id -> message data.
- `<ns>:__acks__.<worker>.<queue>`: ids a worker fetched and has not settled (its ack set).
- `<ns>:__heartbeats__`: worker -> millisecond timestamp of its last beat (0: gone).
- `<ns>:<queue>.XQ` and `.XQ.msgs`: the dead-letter queue; `.XQ.reason:<id>`: why (ours).

The scripts, registered by name in `SCRIPTS` and run with `broker._script(name, *args)`:

- `fetch` (fix 1, 5): pops up to `count` ids into the ack set and returns (id, data) pairs, so
  that each message is decoded, held and returned by its own id.
- `bury` (fix 3): moves a held message to the dead-letter queue with its reason.
- `settle` (fix 2): writes deferred enqueues and the ack of the message that caused them at once.
- `reclaim` (fix 4): returns a dead worker's ack sets to their queues, unless it beat meanwhile.
- `forget` (fix 4): drops a dead worker's heartbeat once no ack set of it is left.

Example::

    fetch = client.register_script(SCRIPTS["fetch"])
    pairs = fetch(args=["dramatiq", "default", broker_id, current_millis(), 10])
"""

from __future__ import annotations

# Same key layout as Dramatiq's dispatch.lua (ARGV[1] is the namespace in every script).
FETCH = """
local ns, queue, worker, now, count = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
redis.call("zadd", ns .. ":__heartbeats__", now, worker)
local q = ns .. ":" .. queue
local acks = ns .. ":__acks__." .. worker .. "." .. queue
local out = {}
for i = 1, count do
    local id = redis.call("lpop", q)
    if not id then break end
    local data = redis.call("hget", q .. ".msgs", id)
    -- An id without data was already acked (pushed twice): nothing to deliver, nothing to hold.
    if data then
        redis.call("sadd", acks, id)
        out[#out + 1] = id
        out[#out + 1] = data
    end
end
return out
"""

BURY = """
local ns, queue, worker, now, id, reason, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local canonical = queue
if string.sub(queue, -3) == ".DQ" then canonical = string.sub(queue, 1, -4) end
local q = ns .. ":" .. queue
local xq = ns .. ":" .. canonical .. ".XQ"
if redis.call("srem", ns .. ":__acks__." .. worker .. "." .. queue, id) == 0 then return 0 end
local data = redis.call("hget", q .. ".msgs", id)
if not data then return 0 end
redis.call("zadd", xq, now, id)
redis.call("hset", xq .. ".msgs", id, data)
redis.call("hdel", q .. ".msgs", id)
redis.call("set", xq .. ".reason:" .. id, reason, "PX", ttl)
return 1
"""

# ARGV: ns, queue, worker, ack_id ("" for none), then (queue, id, data) triples to enqueue first.
SETTLE = """
local ns, queue, worker, ack_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
for i = 5, #ARGV, 3 do
    local target = ns .. ":" .. ARGV[i]
    -- hsetnx: settling twice (a reply lost, the ack retried) must not push the id twice.
    if redis.call("hsetnx", target .. ".msgs", ARGV[i + 1], ARGV[i + 2]) == 1 then
        redis.call("rpush", target, ARGV[i + 1])
    end
end
if ack_id ~= "" then
    local q = ns .. ":" .. queue
    if redis.call("srem", ns .. ":__acks__." .. worker .. "." .. queue, ack_id) > 0 then
        redis.call("hdel", q .. ".msgs", ack_id)
    end
end
return 1
"""

# ARGV: ns, now, heartbeat_timeout, dead worker, queues...  Returns the number of messages returned,
# or -1 when the worker turned out to be alive.
RECLAIM = """
local ns, now, timeout, worker = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local heartbeats = ns .. ":__heartbeats__"
local beat = redis.call("zscore", heartbeats, worker)
if beat and tonumber(beat) > now - timeout then return -1 end
local returned = 0
for i = 5, #ARGV do
    local q = ns .. ":" .. ARGV[i]
    local acks = ns .. ":__acks__." .. worker .. "." .. ARGV[i]
    local ids = redis.call("smembers", acks)
    for _, id in ipairs(ids) do
        if redis.call("hexists", q .. ".msgs", id) == 1 then
            redis.call("rpush", q, id)
            returned = returned + 1
        end
    end
    redis.call("del", acks)
end
return returned
"""

# ARGV: ns, now, heartbeat_timeout, dead worker. Forgets the worker once no ack set of it is left
# (on any queue, ours or not: the same check as Dramatiq's maintenance).
FORGET = """
local ns, now, timeout, worker = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local heartbeats = ns .. ":__heartbeats__"
local beat = redis.call("zscore", heartbeats, worker)
if not beat or tonumber(beat) > now - timeout then return 0 end
if next(redis.call("keys", ns .. ":__acks__." .. worker .. ".*")) then return 0 end
redis.call("zrem", heartbeats, worker)
return 1
"""

#: Every script by the name the broker runs it with.
SCRIPTS: dict[str, str] = {
    "fetch": FETCH,
    "bury": BURY,
    "settle": SETTLE,
    "reclaim": RECLAIM,
    "forget": FORGET,
}
