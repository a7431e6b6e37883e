-- One sync of a replica's velocity counters with the shared Redis (see
-- aggregated.go): apply a batch of payments counted locally, publish the
-- keys it changed, and read back the shared value of every key the replica
-- needs: the ones it asked to load, the ones the batch changed and the ones
-- other replicas changed since its last sync.
-- KEYS[1]: the change stream (prefix .. "vstream").
-- ARGV: prefix, replica id, batch id ("" for none), last stream id seen
--       ("$": none, start from now), seen-id ttl (s), stream max length,
--       #payments, then 8 per payment: payment id, now (unix s), amount,
--       fingerprint, merchant, ip, e-mail hash, device; then #loads and the
--       keys to load (each starts with "v:", "ds:" or "fs:", no prefix).
-- Returns {stream id, reset (0/1), duplicates, counters, hlls, firsts,
-- payment ids other replicas counted since the last sync, the keyspace's
-- epoch, the batch's counters {key, {field, value, ...}, ...} with only
-- the fields it wrote, the batch's sets {key, size, ...}}; the batch's
-- sets are read again (whole) when another replica changed them too:
-- counters is {key, {field, value, ...}, ...}, sets {key, {count,
-- members or false when more than 256}, ...},
-- firsts {key, unix s or 0, ...}; keys without the prefix.
local stream = KEYS[1]
local prefix, me, batch, last = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local seenTTL, maxLen, maxMembers = tonumber(ARGV[5]), tonumber(ARGV[6]), 256
local windows = {60, 3600, 86400}
local dims = {"card", "merchant", "ip", "email", "device"}
local n = tonumber(ARGV[7])
local a = 8

local agg, aggKeys = {}, {}
local hll, hllKeys = {}, {}
local firsts, firstKeys = {}, {}
local dups = 0
local pids = {}
local apply = batch == "" or redis.call("SET", prefix .. "vbatch:" .. batch, 1, "NX", "EX", 3600)
for _ = 1, n do
  local pid, now, amount = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local fp, merchant = ARGV[a + 3], ARGV[a + 4]
  local vals = {fp, merchant, ARGV[a + 5], ARGV[a + 6], ARGV[a + 7]}
  a = a + 8
  local fresh = apply and (pid == "" or redis.call("SET", prefix .. "seen:" .. pid, 1, "NX", "EX", seenTTL))
  if not apply then
    -- this batch was applied before (a retried sync): only read back
  elseif not fresh then
    dups = dups + 1
  else
    if pid ~= "" then pids[#pids + 1] = pid end
    for d = 1, 5 do
      if vals[d] ~= "" then
        local key = "v:" .. dims[d] .. ":" .. vals[d]
        local f = agg[key]
        if not f then
          f = {}
          agg[key] = f
          aggKeys[#aggKeys + 1] = key
        end
        for w = 1, 3 do
          local b = math.floor(now / windows[w])
          local fc, fs = windows[w] .. ":" .. b .. ":c", windows[w] .. ":" .. b .. ":s"
          f[fc] = (f[fc] or 0) + 1
          f[fs] = (f[fs] or 0) + amount
        end
      end
    end
    if fp ~= "" then
      for _, d in ipairs({3, 5}) do
        if vals[d] ~= "" then
          for w = 2, 3 do
            local key = "ds:" .. dims[d] .. ":" .. vals[d] .. ":" .. windows[w] .. ":" .. math.floor(now / windows[w])
            local h = hll[key]
            if not h then
              h = {ttl = windows[w] * 2 + 60, set = {}, list = {}}
              hll[key] = h
              hllKeys[#hllKeys + 1] = key
            end
            if not h.set[fp] then
              h.set[fp] = true
              h.list[#h.list + 1] = fp
            end
          end
        end
      end
      local key = "fs:" .. merchant .. ":" .. fp
      if not firsts[key] then
        firstKeys[#firstKeys + 1] = key
        firsts[key] = now
      elseif now < firsts[key] then
        firsts[key] = now
      end
    end
  end
end

local changed = {}
local counters, hlls, fsOut = {}, {}, {}
local done = {}
-- counters: one read and one write per key, whatever the number of
-- payments; only the fields written are returned (partial)
local partial = {}
for _, key in ipairs(aggKeys) do
  local rk = prefix .. key
  local names, adds = {}, {}
  for f, v in pairs(agg[key]) do
    names[#names + 1] = f
    adds[#adds + 1] = v
  end
  local cur = redis.call("HMGET", rk, unpack(names))
  local set, out, expire = {}, {}, false
  for i, f in ipairs(names) do
    local old = tonumber(cur[i])
    if not old then
      -- a new bucket: drop the one before the previous of its window
      local w, b = string.match(f, "^(%d+):(%d+):c$")
      if w then
        local gone = w .. ":" .. (tonumber(b) - 2)
        redis.call("HDEL", rk, gone .. ":c", gone .. ":s")
        if w == "86400" then expire = true end
      end
      old = 0
    end
    set[#set + 1] = f
    set[#set + 1] = old + adds[i]
    out[#out + 1] = f
    out[#out + 1] = old + adds[i]
  end
  redis.call("HSET", rk, unpack(set))
  if expire then redis.call("EXPIRE", rk, 86400 * 2 + 60) end
  partial[#partial + 1] = key
  partial[#partial + 1] = out
  changed[#changed + 1] = key
  done[key] = true
end
-- distinct cards: one set per key and bucket, read back whole while small
local function readSet(rk)
  local n = redis.call("SCARD", rk)
  if n == 0 then return {0, {}} end
  if n <= maxMembers then return {n, redis.call("SMEMBERS", rk)} end
  return {n, false}
end
-- the batch's sets: their size only (the replica adds the cards it sent)
local partialSets = {}
for _, key in ipairs(hllKeys) do
  local h = hll[key]
  local rk = prefix .. key
  local added = redis.call("SADD", rk, unpack(h.list))
  local n = redis.call("SCARD", rk)
  if added > 0 then
    if n == added then redis.call("EXPIRE", rk, h.ttl) end
    changed[#changed + 1] = key
  end
  partialSets[#partialSets + 1] = key
  partialSets[#partialSets + 1] = n
end
for _, key in ipairs(firstKeys) do
  local t = firsts[key]
  local old = redis.call("SET", prefix .. key, t, "NX", "GET", "EX", 90 * 86400)
  if old then
    t = tonumber(old)
  else
    changed[#changed + 1] = key
  end
  fsOut[#fsOut + 1] = key
  fsOut[#fsOut + 1] = t
  done[key] = true
end

if #changed > 0 then
  if #pids > 0 then
    redis.call("XADD", stream, "MAXLEN", "~", maxLen, "*", "r", me, "k", cjson.encode(changed), "p", cjson.encode(pids))
  else
    redis.call("XADD", stream, "MAXLEN", "~", maxLen, "*", "r", me, "k", cjson.encode(changed))
  end
end

-- what the other replicas changed since the last sync
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
local nl = tonumber(ARGV[a])
for i = 1, nl do toRead[#toRead + 1] = ARGV[a + i] end

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
-- the keyspace's epoch: a new one means Redis lost its data
local epoch = redis.call("GET", prefix .. "vepoch")
if not epoch then
  epoch = me .. ":" .. tailID
  redis.call("SET", prefix .. "vepoch", epoch)
end
return {newLast, reset, dups, counters, hlls, fsOut, othersPids, epoch, partial, partialSets}
