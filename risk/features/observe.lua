-- One risk evaluation's features in one call.
-- KEYS: 5 counter hashes (one per dimension: card, merchant, ip, email,
--       device; fields "<window>:<bucket>:c" and ":s"); for ip and device x
--       (1h, 24h) the distinct-card HLLs current, previous (8); the
--       first-seen key (1).
-- ARGV: record (0/1), amount, fingerprint, now (unix s), dimension mask
--       ("10110": which dimensions have a value), window seconds x3.
-- Returns 60 counters (cur count, cur sum, prev count, prev sum per
-- dimension and window), 4 x (current, previous) distinct counts, and the
-- first-seen time.
local record = ARGV[1] == "1"
local amount = tonumber(ARGV[2])
local fp = ARGV[3]
local now = tonumber(ARGV[4])
local mask = ARGV[5]
local windows = {tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])}
local out = {}
for d = 1, 5 do
  local key = KEYS[d]
  if string.sub(mask, d, d) == "1" then
    local prevFields = {}
    local curVals = {}
    for w = 1, 3 do
      local b = math.floor(now / windows[w])
      local cur, prev = windows[w] .. ":" .. b, windows[w] .. ":" .. (b - 1)
      prevFields[#prevFields + 1] = prev .. ":c"
      prevFields[#prevFields + 1] = prev .. ":s"
      if record then
        local c = redis.call("HINCRBY", key, cur .. ":c", 1)
        local s = redis.call("HINCRBY", key, cur .. ":s", amount)
        curVals[#curVals + 1] = c
        curVals[#curVals + 1] = s
        if c == 1 then
          -- a new bucket: drop the one before the previous, keep the key alive
          local old = windows[w] .. ":" .. (b - 2)
          redis.call("HDEL", key, old .. ":c", old .. ":s")
          if w == 3 then redis.call("EXPIRE", key, windows[3] * 2 + 60) end
        end
      else
        local v = redis.call("HMGET", key, cur .. ":c", cur .. ":s")
        curVals[#curVals + 1] = tonumber(v[1]) or 0
        curVals[#curVals + 1] = tonumber(v[2]) or 0
      end
    end
    local p = redis.call("HMGET", key, unpack(prevFields))
    for w = 1, 3 do
      out[#out + 1] = curVals[w * 2 - 1]
      out[#out + 1] = curVals[w * 2]
      out[#out + 1] = tonumber(p[w * 2 - 1]) or 0
      out[#out + 1] = tonumber(p[w * 2]) or 0
    end
  else
    for _ = 1, 12 do out[#out + 1] = 0 end
  end
end
-- distinct cards per ip (dimension 3) and device (dimension 5)
local k = 6
for _, d in ipairs({3, 5}) do
  local on = string.sub(mask, d, d) == "1" and fp ~= ""
  for w = 2, 3 do
    local cur, prev = KEYS[k], KEYS[k + 1]
    k = k + 2
    if on then
      if record and redis.call("PFADD", cur, fp) == 1 then
        redis.call("EXPIRE", cur, windows[w] * 2 + 60)
      end
      out[#out + 1] = redis.call("PFCOUNT", cur)
      out[#out + 1] = redis.call("PFCOUNT", prev)
    else
      out[#out + 1] = 0
      out[#out + 1] = 0
    end
  end
end
local fsk = KEYS[k]
local first = 0
if fp ~= "" then
  if record then
    -- SET NX GET: the earlier time if there was one, in one call
    first = tonumber(redis.call("SET", fsk, now, "NX", "GET", "EX", 90 * 86400)) or now
  else
    first = tonumber(redis.call("GET", fsk)) or 0
  end
end
out[#out + 1] = first
return out
