-- bench/bearer_client.lua: bearer as a bench client (Lua 5.4, the public API only), against
-- the fixture API at BENCH_URL with the key BENCH_TOKEN (bench/fixture).
--   verify N        N x client:get("/api/v1/verify"), decoded (res.json.valid checked)
--   pages P         P passes over the 100 list-records pages: client:get with a query,
--                   decoded, every record walked, pagination.hasMore followed
--   decode P        the floor under `pages`: the 100 bodies fetched once, then P passes of
--                   bearer.json.decode (the core's reader) over them, the same record walk,
--                   no transfer
--   cjson P         the same with lua-cjson's decode (what most Lua 5.4 clients pay; it
--                   keeps nulls and gives floats, which bearer.json does not)
--   gather N R      R rounds of N calls to /api/v1/slow (50 ms) at once, bearer.gather
--   rss N           N sequential verify calls, VmRSS sampled 100 times: peak, and the mean
--                   of the first and last 10 % of the samples (is it flat?)
-- Prints one line "RESULT n= secs= us= rss_kb= errors= ..." (us per request, or per round
-- for gather) and exits 1 when any call failed.
local bearer = require "bearer"
local core = require "bearer.core"
local cjson = require "cjson.safe"

local mode, n, rounds = arg[1], tonumber(arg[2]), tonumber(arg[3] or 1)
local base, token = os.getenv("BENCH_URL"), os.getenv("BENCH_TOKEN")
if not (mode and n and n > 0 and base and token) then
  io.stderr:write("usage: BENCH_URL=.. BENCH_TOKEN=.. lua5.4 bearer_client.lua "
                  .. "verify|pages|decode|cjson|gather|rss N [ROUNDS]\n")
  os.exit(2)
end

local function status_kb(field)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

local c = bearer.client{ base_url = base, key = bearer.key(token, { scheme = "overten" }),
                         max_retries = 0 }
local units, errors, extra = 0, 0, ""
local function fail(err)
  errors = errors + 1
  if errors <= 3 then io.stderr:write(tostring(err), "\n") end
end

local function verify_once()
  local res, err = c:get("/api/v1/verify")
  if not (res and res.json and res.json.valid == true) then fail(err) end
end

-- N calls to the slow route in flight together, through bearer.gather
local function slow_round()
  local fns = {}
  for i = 1, n do fns[i] = function() return c:get("/api/v1/slow") end end
  local values, errs = bearer.gather(fns, { concurrency = n })
  for i = 1, n do
    if not (values[i] and values[i].json and values[i].json.valid == true) then fail(errs[i]) end
  end
end

local t0 = core.monotime()
if mode == "verify" then
  for _ = 1, n do verify_once() end
  units = n
elseif mode == "pages" then
  local records = 0
  for _ = 1, n do
    local offset = 0
    for _ = 1, 1000 do   -- bounded: the fixture has 100 pages
      local res, err = c:get("/external-api/v1/list-records", { query = { limit = 100, offset = offset } })
      units = units + 1
      if not (res and res.json) then fail(err); break end
      for _, rec in ipairs(res.json.data) do
        if type(rec.recordId) == "string" then records = records + 1 end
      end
      if not res.json.pagination.hasMore then break end
      offset = offset + 100
    end
  end
  if records ~= n * 10000 then fail("records: " .. records) end
elseif mode == "decode" or mode == "cjson" then
  local decode = mode == "cjson" and cjson.decode or require("bearer.json").decode
  local bodies = {}
  for i = 1, 100 do
    local res, err = c:get("/external-api/v1/list-records", { query = { limit = 100, offset = (i - 1) * 100 } })
    if not res then fail(err); break end
    bodies[i] = res.body
  end
  t0 = core.monotime()
  local records = 0
  for _ = 1, n do
    for i = 1, #bodies do
      local doc = decode(bodies[i])
      for _, rec in ipairs(doc.data) do
        if type(rec.recordId) == "string" then records = records + 1 end
      end
    end
  end
  units = n * #bodies
  if records ~= n * 10000 then fail("records: " .. records) end
elseif mode == "gather" then
  for _ = 1, rounds do slow_round() end
  units = rounds
elseif mode == "rss" then
  local samples, every = {}, math.max(1, n // 100)
  for i = 1, n do
    verify_once()
    if i % every == 0 then samples[#samples + 1] = status_kb("VmRSS") end
  end
  units = n
  local k = math.max(1, #samples // 10)
  local first, last = 0, 0
  for i = 1, k do first, last = first + samples[i], last + samples[#samples - k + i] end
  extra = (" first_kb=%d last_kb=%d"):format(first // k, last // k)
else
  io.stderr:write("unknown mode ", mode, "\n")
  os.exit(2)
end
local secs = core.monotime() - t0
print(("RESULT n=%d secs=%.6f us=%.2f rss_kb=%d errors=%d%s")
  :format(units, secs, secs * 1e6 / units, status_kb("VmHWM"), errors, extra))
os.exit(errors == 0 and 0 or 1)
