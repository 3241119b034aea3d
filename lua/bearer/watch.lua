--- bearer.watch: new items of a newest-first list as they appear, polled
-- within an API's rate limit (Optiverse's watch_records; any API whose
-- list is offset-paged, newest first, with an id and a creation time).
--
-- The API's limit is kept by construction: every request the watcher
-- makes (each page of a poll, each retry after a failure) starts at least
-- `interval` seconds after the one before, on the client's clock, and the
-- client's own quick retries are off for its requests (the API module's
-- fetch says so: they would come seconds apart). Failures it can wait out
-- (5xx, timeouts, connection errors, 429) make it back off; anything else
-- is raised, as from any iterator.
local check = require "bearer.check"
--- Options of a polling watcher (`watch_records`).
---@class bearer.WatchOptions
---@field since string|nil ISO 8601; default now on the client's clock
---@field interval number|nil seconds between requests (default the API's limit)
---@field i_have_a_higher_limit boolean|nil allows an interval below the API's limit
---@field max_polls integer|nil stop after this many polls
---@field until_time number|string|nil stop before a poll at or after this time (clock seconds or ISO 8601)
---@field limit integer|nil page size
---@field max_backoff number|nil the longest wait after failures (default 3600)
---@field max_failures integer|nil raise after this many failures in a row + 1
---@field on_error (fun(err: bearer.Error, seconds: number))|nil sees each transient failure

local M = {}

-- Failures a watcher waits out instead of raising.
local TRANSIENT = { server = true, timeout = true, connection = true, rate_limit = true }

-- A raise lands at the caller of the API method that called new().
local UP = 4

local OPTIONS = {
  since = "string", interval = "number", i_have_a_higher_limit = "boolean",
  max_polls = "number", until_time = "time", limit = "number",
  max_backoff = "number", max_failures = "number", on_error = "function",
  store = "string", on_store_error = "string",
}

-- How long a record stays claimed by the watcher that yielded it: a day,
-- or ten polls when they are further apart. Past that a watcher started
-- with a `since` older than the claim would yield the record again.
local CLAIM_TTL_MIN = 86400

local parse_time = check.parse_time

local function invalid(name, why) return select(2, check.invalid(name, why)) end

--- new(api, opts, rules) -> iterator
-- `api` is the API module's client (its `http` a bearer.client); `opts`
-- the caller's (since=, interval=, max_polls=, until_time=, limit=,
-- max_backoff=, max_failures=, on_error=, i_have_a_higher_limit=).
-- rules: fname, api (its name, for messages), interval (the API's
-- limit), max_backoff, name (of the limiter shared between processes),
-- id and time (the item fields), format_time(t), query(since, limit) ->
-- query | nil, err, fetch(query) -> doc | nil, err.
-- Yields each item whose time is at or after `since` once, oldest first
-- within a poll. The first poll walks every page of `since`; later polls
-- read from the newest item down and stop at the first page holding an
-- item seen before.
---@param api table the API module's client
---@param opts bearer.WatchOptions|nil
---@param rules table (above)
---@return fun(): table|nil iterator
function M.new(api, opts, rules)
  local fname = rules.fname
  -- Raises at the caller of the API method; `depth` counts the helpers between.
  local function bad(name, why, depth)
    error(("bad option '%s' to '%s' (%s)"):format(name, fname, why), UP + (depth or 0))
  end
  local function count_option(o, name, min)
    local v = o[name]
    if v ~= nil and not (v % 1 == 0 and v >= min) then
      bad(name, ("integer >= %d expected, got %s"):format(min, tostring(v)), 1)
    end
    return v
  end
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error(("bad argument #1 to '%s' (table expected, got %s)"):format(fname, type(opts)), UP - 1)
  end
  for name, v in pairs(opts) do
    local want = OPTIONS[name]
    if not want then bad(tostring(name), "unknown option") end
    if want == "time" then
      if type(v) ~= "number" and type(v) ~= "string" then
        bad(name, "clock seconds or ISO 8601 string expected, got " .. type(v))
      end
    elseif type(v) ~= want then
      bad(name, want .. " expected, got " .. type(v))
    end
  end
  local interval = opts.interval or rules.interval
  if not (interval > 0 and interval < math.huge) then
    bad("interval", "positive number of seconds expected")
  end
  if interval < rules.interval and not opts.i_have_a_higher_limit then
    bad("interval", ("%g s is faster than %s allows (one request per %d s); pass "
        .. "i_have_a_higher_limit = true if your key has a higher limit")
        :format(interval, rules.api, rules.interval))
  end
  local max_polls = count_option(opts, "max_polls", 1)
  local max_failures = count_option(opts, "max_failures", 0)
  local max_backoff = opts.max_backoff or math.max(rules.max_backoff, interval)
  if max_backoff ~= max_backoff or max_backoff < interval then
    bad("max_backoff", "at least interval expected")
  end
  local on_error = opts.on_error
  require("bearer.ratelimit").check_store_options(opts.store, opts.on_store_error, fname, UP - 1)

  local http = api.http
  -- Spacing wants a clock that never jumps; dates want the wall clock
  -- (the client's host gives both; a test host injects one for both).
  local function sleep(s) return http:sleep(s) end
  local function mono() return http:clock() end
  local function wall() return http:now() end
  -- Where the host shares limits between processes (every nginx worker
  -- may run a watcher with the same key), or `store` names a redis://
  -- server (watchers on several hosts), they share one slot per interval;
  -- this process's own spacing is next_at below. Such a store also
  -- claims each new record for the one watcher that yields it.
  local shared = http:shared_limiter{ name = rules.name, requests = 1, per = interval,
                                      store = opts.store, on_store_error = opts.on_store_error }
  local claims = shared and shared.store.claim and shared.store
  local claim_ttl = math.max(CLAIM_TTL_MIN, 10 * interval)
  local token = claims and require("bearer.redis").token()

  local since = opts.since or rules.format_time(wall())
  local since_t = parse_time(since)
  if not since_t then
    error(invalid("since", "must be an ISO 8601 date or date-time, got '" .. since .. "'"))
  end
  local until_t = opts.until_time
  if type(until_t) == "string" then
    until_t = parse_time(until_t)
    if not until_t then
      error(invalid("until_time", "must be clock seconds or an ISO 8601 date-time, got '"
                    .. opts.until_time .. "'"))
    end
  end
  local q, err = rules.query(since, opts.limit or 100)
  if not q then error(err) end

  local next_at          -- monotonic time before which no request may start
  -- Record ids of the last three successful polls. A later poll reads
  -- only the top of the list, so ids that fell further down can go.
  local gens = { {}, {}, {} }
  local function known(id) return gens[1][id] or gens[2][id] or gens[3][id] end

  local function fetch(offset)
    if next_at then
      local d = next_at - mono()
      if d > 0 then sleep(d) end
    end
    if shared then
      local waited, e = shared:acquire()
      if waited == nil then return nil, e end
    end
    next_at = mono() + interval
    q.offset = ("%d"):format(offset)
    return rules.fetch(q)
  end

  -- One poll: the new records, oldest first, or nil, err.
  local function poll()
    local ids, fresh, offset = {}, {}, 0
    while true do
      local doc, e = fetch(offset)
      if not doc then return nil, e end
      local met = false
      for _, rec in ipairs(doc.data) do
        local id = type(rec) == "table" and rec[rules.id]
        -- Without a recordId a record cannot be told apart from a repeat.
        if type(id) == "string" then
          if known(id) then
            met = true
          elseif not ids[id] then
            local t = parse_time(rec[rules.time])
            if t == nil or t >= since_t then
              fresh[#fresh + 1] = { t = t or math.huge, n = #fresh + 1, rec = rec }
            end
          end
          ids[id] = true
        end
      end
      offset = offset + #doc.data
      local p = type(doc.pagination) == "table" and doc.pagination or {}
      local total = tonumber(p.total)
      if met or #doc.data == 0 or p.hasMore == false or (total and offset >= total) then
        break
      end
    end
    -- The list is newest first; equal times keep their relative order.
    table.sort(fresh, function(a, b)
      if a.t ~= b.t then return a.t < b.t end
      return a.n > b.n
    end)
    if claims then
      -- Ours alone: a record another watcher claimed is its to yield. A
      -- failed claim fails the poll (retried; ours stay ours), unless the
      -- store may fail locally: then this watcher yields it too.
      local mine = {}
      for _, item in ipairs(fresh) do
        local won, e = claims:claim(item.rec[rules.id], claim_ttl, token)
        if won == nil then
          if opts.on_store_error ~= "local" then return nil, e end
          won = true
        end
        if won then mine[#mine + 1] = item end
      end
      fresh = mine
    end
    gens = { ids, gens[1], gens[2] }
    return fresh
  end

  local queue, qi, polls, failures = {}, 0, 0, 0
  return function()
    while true do
      qi = qi + 1
      local item = queue[qi]
      if item then return item.rec end
      if max_polls and polls >= max_polls then return nil end
      if until_t then
        local wait = next_at and math.max(0, next_at - mono()) or 0
        if wall() + wait >= until_t then return nil end
      end
      polls = polls + 1
      local fresh, e = poll()
      queue, qi = fresh or {}, 0
      if fresh then
        failures = 0
      else
        if not TRANSIENT[e.kind] then error(e) end
        failures = failures + 1
        if max_failures and failures > max_failures then error(e) end
        -- Retry-After is the server's word (never below the interval);
        -- without it, the wait doubles from twice the interval.
        local delay = e.retry_after and math.max(e.retry_after, interval)
                      or math.min(interval * 2 ^ failures, max_backoff)
        next_at = math.max(next_at or 0, mono() + delay)
        if on_error then on_error(e, delay) end
      end
    end
  end
end

return M
