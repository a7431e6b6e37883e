-- One sync of a replica's velocity counters with the shared Redis (see
-- aggregated.go): apply a batch of payments counted locally, publish the
-- keys it changed, and read back the shared value of every key the replica
-- needs: the ones it asked to load, the ones the batch changed and the ones
-- other replicas changed since its last sync.
-- KEYS[1]: the change stream (prefix .. "vstream").
-- ARGV: prefix, replica id, batch id ("" for none), last stream id seen
--       ("$": none, start from now), seen-id ttl (s), stream max length,
--       the keyspace's epoch the replica knows ("" for none);
--       then the batch, aggregated: #payment ids and the ids; #minutes
--       and per minute: the six fields its payments add to (count and sum
--       of the 60, 3600 and 86400 s buckets), the count field of each
--       window's bucket before the previous, #counter keys and per key:
--       key, count, sum, flags and, when flags has 16, the six new
--       values (see "computed" below; flags -1: not computed; without 16,
--       the key is new in all three buckets: count and sum); #set keys and per key: key, ttl,
--       size known (-1: not known), #cards, the cards; #first-seen keys
--       and per key: key, unix s; the batch's keys
--       as a JSON list ("" for none) and its payment ids as a JSON list
--       ("" for none); then #loads and the keys to load (each starts with
--       "v:", "ds:" or "fs:"). Keys come without the prefix.
-- Returns {stream id, flag (0, 1: the replica must start over, 2: payment
-- ids counted already, listed next; nothing applied), duplicates, counters,
-- sets, firsts, payment ids other replicas counted since the last sync,
-- the keyspace's epoch, the batch's counters {key, {value x 6}, ...} (the
-- new values of the six fields, per minute and key in the order sent; 0
-- for a key whose values the replica computed), the batch's sets {key,
-- size, ...}}:
-- counters is {key, {field, value, ...}, ...}, sets {key, {size, members
-- or nil when more than 256}, ...}, firsts {key, unix s or 0, ...}. The
-- batch's sets are read again (whole) when another replica changed them.
--
-- Computed: the change stream is read before the batch is applied. A key
-- no other replica changed since the replica's last sync holds in Redis
-- what the replica's view holds (while the stream has no gap and the
-- epoch is the one it knows), so the replica sends its new values and the
-- script writes them without reading the key: flags is 1 (set the key's
-- expiry: its day bucket is new) + 2, 4, 8 (drop the bucket before the
-- previous of the 60, 3600, 86400 s window). A set's new size is the size
-- known plus what SADD added. Otherwise the key is read and added to.
local stream = KEYS[1]
local prefix, me, batch, last = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local seenTTL, maxLen, maxMembers = tonumber(ARGV[5]), tonumber(ARGV[6]), 256
local knownEpoch = ARGV[7]
local a = 8
local function nextArg()
  local v = ARGV[a]
  a = a + 1
  return v
end

-- the batch, aggregated by the replica: payment ids, counter fields,
-- distinct-card sets, first-seen times
local pids = {}
for i = 1, tonumber(nextArg()) do pids[i] = nextArg() end
local minutes = {}
for i = 1, tonumber(nextArg()) do
  local fields, gone = {}, {}
  for j = 1, 6 do fields[j] = nextArg() end
  for j = 1, 3 do gone[j] = nextArg() end
  local keys = {}
  for j = 1, tonumber(nextArg()) do
    local k = {nextArg(), tonumber(nextArg()), tonumber(nextArg()), tonumber(nextArg())}
    if k[4] >= 16 then
      for v = 5, 10 do k[v] = nextArg() end
    else
      -- a key new in all three buckets: its count and sum
      for v = 5, 9, 2 do k[v], k[v + 1] = k[2], k[3] end
    end
    keys[j] = k
  end
  minutes[i] = {fields, gone, keys}
end
local sets = {}
for i = 1, tonumber(nextArg()) do
  local key, ttl, known, n = nextArg(), tonumber(nextArg()), tonumber(nextArg()), tonumber(nextArg())
  local fps = {}
  for j = 1, n do fps[j] = nextArg() end
  sets[i] = {key, ttl, fps, known}
end
local firsts = {}
for i = 1, tonumber(nextArg()) do firsts[i] = {nextArg(), tonumber(nextArg())} end
local changedJSON, pidsJSON = nextArg(), nextArg()

-- a distinct-card set, read whole while small
local function readSet(rk)
  local n = redis.call("SCARD", rk)
  if n == 0 then return {0, {}} end
  if n <= maxMembers then return {n, redis.call("SMEMBERS", rk)} end
  return {n, false}
end

-- what the other replicas changed since the last sync, read first: a
-- batch key none of them changed is written without being read
local toRead = {}
local othersPids = {}
local reset = 0
local newLast = last
local function idLess(x, y)
  local xm, xs = string.match(x, "^(%d+)-(%d+)$")
  local ym, ys = string.match(y, "^(%d+)-(%d+)$")
  xm, xs, ym, ys = tonumber(xm), tonumber(xs), tonumber(ym), tonumber(ys)
  return xm < ym or (xm == ym and xs < ys)
end
local function pidsOf(fields)
  for i = 1, #fields, 2 do
    if fields[i] == "p" then
      for _, p in ipairs(cjson.decode(fields[i + 1])) do othersPids[#othersPids + 1] = p end
    end
  end
end
local tail = redis.call("XREVRANGE", stream, "+", "-", "COUNT", 1)
local tailID = "0-0"
if #tail > 0 then tailID = tail[1][1] end
if last == "$" then
  -- starting over: nothing cached to refresh, but remember the payments
  -- counted lately, so that a retry is not counted again here
  newLast = tailID
  for _, e in ipairs(redis.call("XREVRANGE", stream, "+", "-", "COUNT", 2000)) do pidsOf(e[2]) end
else
  local head = redis.call("XRANGE", stream, "-", "+", "COUNT", 1)
  if #head > 0 and last ~= "0-0" and idLess(last, head[1][1]) then
    -- entries after the last one seen were trimmed: the replica starts over
    reset = 1
    newLast = tailID
  else
    local entries = redis.call("XRANGE", stream, "(" .. last, "+", "COUNT", 5000)
    if #entries == 5000 then
      reset = 1
      newLast = tailID
    else
      for _, e in ipairs(entries) do
        newLast = e[1]
        local fields = e[2]
        local from, keys, ps = nil, nil, nil
        for i = 1, #fields, 2 do
          if fields[i] == "r" then
            from = fields[i + 1]
          elseif fields[i] == "k" then
            keys = fields[i + 1]
          elseif fields[i] == "p" then
            ps = fields[i + 1]
          end
        end
        if from ~= me then
          if keys then
            for _, k in ipairs(cjson.decode(keys)) do toRead[#toRead + 1] = k end
          end
          if ps then
            for _, p in ipairs(cjson.decode(ps)) do othersPids[#othersPids + 1] = p end
          end
        end
      end
    end
  end
end
-- the keyspace's epoch: a new one means Redis lost its data
local epoch = redis.call("GET", prefix .. "vepoch")
-- the replica's view of a key is Redis's unless another replica changed it
local trusted = last ~= "$" and reset == 0 and epoch and epoch == knownEpoch
local changed = {}
if trusted then
  for _, k in ipairs(toRead) do changed[k] = true end
end

local apply = batch == "" or redis.call("SET", prefix .. "vbatch:" .. batch, 1, "NX", "EX", 3600)
if apply and #pids > 0 then
  local ks = {}
  for i, pid in ipairs(pids) do ks[i] = prefix .. "seen:" .. pid end
  if redis.call("EXISTS", unpack(ks)) > 0 then
    -- payments another replica counted already: apply nothing, name them
    local dups = {}
    for i, k in ipairs(ks) do
      if redis.call("EXISTS", k) == 1 then dups[#dups + 1] = pids[i] end
    end
    -- nothing applied: the batch id is free again (a retry of this id
    -- after a lost answer must not pass for an applied batch)
    if batch ~= "" then redis.call("DEL", prefix .. "vbatch:" .. batch) end
    return {last, 2, dups, {}, {}, {}, {}, "", {}, {}}
  end
  for _, k in ipairs(ks) do redis.call("SET", k, 1, "EX", seenTTL) end
end

local counters, hlls, fsOut = {}, {}, {}
local partial, partialSets = {}, {}
local done = {}
if apply then
  for _, m in ipairs(minutes) do
    local fields, gone, keys = m[1], m[2], m[3]
    for _, k in ipairs(keys) do
      local key, c, s, flags = k[1], k[2], k[3], k[4]
      local rk = prefix .. key
      if trusted and flags >= 0 and not changed[key] then
        -- computed by the replica: one write, no read
        redis.call("HSET", rk, fields[1], k[5], fields[2], k[6], fields[3], k[7], fields[4], k[8], fields[5], k[9], fields[6], k[10])
        if flags % 16 >= 2 then
          local drop = {}
          for w = 1, 3 do
            if math.floor(flags / (2 ^ w)) % 2 == 1 then
              local g = gone[w]
              drop[#drop + 1] = g
              drop[#drop + 1] = string.sub(g, 1, -2) .. "s"
            end
          end
          redis.call("HDEL", rk, unpack(drop))
        end
        if flags % 2 == 1 then redis.call("EXPIRE", rk, 86400 * 2 + 60) end
        partial[#partial + 1] = key
        partial[#partial + 1] = 0
      else
        -- one read and one write per key and minute; the read takes the
        -- count field of each window's bucket before the previous too, so
        -- that a new bucket drops it only when it is there
        local cur = redis.call("HMGET", rk, fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], gone[1], gone[2], gone[3])
        local out = {}
        local drop = nil
        for w = 1, 3 do
          local oc, osum = tonumber(cur[w * 2 - 1]) or 0, tonumber(cur[w * 2]) or 0
          out[w * 2 - 1], out[w * 2] = oc + c, osum + s
          if not cur[w * 2 - 1] and cur[6 + w] then
            -- a new bucket: drop the one before the previous of its window
            drop = drop or {}
            local g = gone[w]
            drop[#drop + 1] = g
            drop[#drop + 1] = string.sub(g, 1, -2) .. "s"
          end
        end
        redis.call("HSET", rk, fields[1], out[1], fields[2], out[2], fields[3], out[3], fields[4], out[4], fields[5], out[5], fields[6], out[6])
        if drop then redis.call("HDEL", rk, unpack(drop)) end
        -- a new day's bucket keeps the key alive
        if not cur[5] then redis.call("EXPIRE", rk, 86400 * 2 + 60) end
        partial[#partial + 1] = key
        partial[#partial + 1] = out
      end
      done[key] = true
    end
  end
  -- sets: their size only (the replica adds the cards it sent)
  for _, st in ipairs(sets) do
    local key, ttl, fps, known = st[1], st[2], st[3], st[4]
    local rk = prefix .. key
    local added = redis.call("SADD", rk, unpack(fps))
    local n
    if trusted and known >= 0 and not changed[key] then
      n = known + added
    else
      n = redis.call("SCARD", rk)
    end
    if added > 0 and n == added then redis.call("EXPIRE", rk, ttl) end
    partialSets[#partialSets + 1] = key
    partialSets[#partialSets + 1] = n
  end
  for _, f in ipairs(firsts) do
    local key, t = f[1], f[2]
    local old = redis.call("SET", prefix .. key, t, "NX", "GET", "EX", 90 * 86400)
    if old then t = tonumber(old) end
    fsOut[#fsOut + 1] = key
    fsOut[#fsOut + 1] = t
    done[key] = true
  end
  if changedJSON ~= "" then
    local id
    if pidsJSON ~= "" then
      id = redis.call("XADD", stream, "MAXLEN", "~", maxLen, "*", "r", me, "k", changedJSON, "p", pidsJSON)
    else
      id = redis.call("XADD", stream, "MAXLEN", "~", maxLen, "*", "r", me, "k", changedJSON)
    end
    newLast = id
  end
end

if not apply then
  -- applied by an attempt whose answer was lost: read the batch's keys
  -- back, so that the replica's view holds what that attempt wrote
  for _, m in ipairs(minutes) do
    for _, k in ipairs(m[3]) do toRead[#toRead + 1] = k[1] end
  end
  for _, st in ipairs(sets) do toRead[#toRead + 1] = st[1] end
  for _, f in ipairs(firsts) do toRead[#toRead + 1] = f[1] end
end
for _ = 1, tonumber(nextArg()) do toRead[#toRead + 1] = nextArg() end

for _, key in ipairs(toRead) do
  if not done[key] then
    done[key] = true
    local kind = string.sub(key, 1, 2)
    if kind == "v:" then
      counters[#counters + 1] = key
      counters[#counters + 1] = redis.call("HGETALL", prefix .. key)
    elseif kind == "ds" then
      hlls[#hlls + 1] = key
      hlls[#hlls + 1] = readSet(prefix .. key)
    else
      fsOut[#fsOut + 1] = key
      fsOut[#fsOut + 1] = tonumber(redis.call("GET", prefix .. key)) or 0
    end
  end
end
if not epoch then
  epoch = me .. ":" .. tailID
  redis.call("SET", prefix .. "vepoch", epoch)
end
return {newLast, reset, {}, counters, hlls, fsOut, othersPids, epoch, partial, partialSets}
