-- One risk evaluation's features in one call.
-- KEYS: for 5 dimensions x 3 windows: current bucket, previous bucket (30);
--       for ip and device x (1h, 24h): distinct-card HLL current, previous (8);
--       first-seen key (1).
-- ARGV: record (0/1), amount, fingerprint, now (unix s), dimension mask
--       ("10110": which dimensions have a value), window seconds x3.
-- Returns 60 counters (cur count, cur sum, prev count, prev sum per
-- dimension and window), 4 distinct counts, first-seen time.
local record = ARGV[1] == "1"
local amount = tonumber(ARGV[2])
local fp = ARGV[3]
local now = tonumber(ARGV[4])
local mask = ARGV[5]
local windows = {tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])}
local out = {}
local k = 1
for d = 1, 5 do
  local on = string.sub(mask, d, d) == "1"
  for w = 1, 3 do
    local cur, prev = KEYS[k], KEYS[k + 1]
    k = k + 2
    if on then
      if record then
        redis.call("HINCRBY", cur, "c", 1)
        redis.call("HINCRBY", cur, "s", amount)
        redis.call("EXPIRE", cur, windows[w] * 2 + 60)
      end
      local c = redis.call("HMGET", cur, "c", "s")
      local p = redis.call("HMGET", prev, "c", "s")
      out[#out + 1] = tonumber(c[1]) or 0
      out[#out + 1] = tonumber(c[2]) or 0
      out[#out + 1] = tonumber(p[1]) or 0
      out[#out + 1] = tonumber(p[2]) or 0
    else
      for _ = 1, 4 do out[#out + 1] = 0 end
    end
  end
end
-- distinct cards per ip (dimension 3) and device (dimension 5)
for _, d in ipairs({3, 5}) do
  local on = string.sub(mask, d, d) == "1" and fp ~= ""
  for w = 2, 3 do
    local cur, prev = KEYS[k], KEYS[k + 1]
    k = k + 2
    if on then
      if record then
        redis.call("PFADD", cur, fp)
        redis.call("EXPIRE", cur, windows[w] * 2 + 60)
      end
      out[#out + 1] = redis.call("PFCOUNT", cur, prev)
    else
      out[#out + 1] = 0
    end
  end
end
-- first seen by this merchant
local fsk = KEYS[k]
local first = 0
if fp ~= "" then
  if record then
    redis.call("SET", fsk, now, "NX", "EX", 90 * 86400)
  end
  first = tonumber(redis.call("GET", fsk)) or 0
end
out[#out + 1] = first
return out
