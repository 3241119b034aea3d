--- bearer.ratelimit: "at most `requests` per `per` seconds", by waiting.
--
-- A limiter hands out start times: acquire() books the earliest slot that
-- keeps every window of `per` seconds at `requests` or fewer, then sleeps
-- until it. Booking before sleeping keeps the limit when several callers
-- share one limiter and sleep concurrently (coroutines in nginx): each one
-- already holds its own slot.
--
-- Anything with an acquire() method can stand in for a limiter (the nginx
-- integration shares one across workers).
local core = require "bearer.core"

local M = {}
local Limiter = {}
Limiter.__index = Limiter

local function positive(v) return type(v) == "number" and v > 0 and v == v and v < math.huge end

--- bearer.ratelimit.new{ requests = N, per = seconds [, clock =, sleep = ] }
function M.new(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'ratelimit' (table expected, got " .. type(opts) .. ")", 2)
  end
  if not (positive(opts.requests) and opts.requests % 1 == 0) then
    error("bad option 'requests' to 'ratelimit' (positive integer expected)", 2)
  end
  if not positive(opts.per) then
    error("bad option 'per' to 'ratelimit' (positive number of seconds expected)", 2)
  end
  for _, name in ipairs{ "clock", "sleep" } do
    if opts[name] ~= nil and type(opts[name]) ~= "function" then
      error(("bad option '%s' to 'ratelimit' (function expected, got %s)")
            :format(name, type(opts[name])), 2)
    end
  end
  return setmetatable({
    requests = opts.requests,
    per = opts.per,
    clock = opts.clock or core.monotime,
    sleep = opts.sleep or core.sleep,
    slots = {},          -- start times of the last `requests` bookings, ascending
  }, Limiter)
end

--- The booking rule, shared with the nginx limiter (whose slots live in a
-- shared dict): appends to `slots` (ascending start times, at most
-- `requests` kept) the earliest start at or after `now` that keeps every
-- `per`-second window at `requests` starts or fewer (spaced `margin` more,
-- default 0), and returns it.
function M.book(slots, now, requests, per, margin)
  local start = now
  if #slots >= requests then
    start = math.max(now, slots[#slots - requests + 1] + per + (margin or 0))
  end
  slots[#slots + 1] = start
  while #slots > requests do table.remove(slots, 1) end
  return start
end

--- Books the next slot; returns the seconds it will wait, without waiting.
function Limiter:reserve()
  local now = self.clock()
  return M.book(self.slots, now, self.requests, self.per) - now
end

--- Waits for the next slot (through the limiter's sleep).
function Limiter:acquire()
  local wait = self:reserve()
  if wait > 0 then self.sleep(wait) end
  return wait
end

--- A limiter from a client's `rate_limit` option: a spec table or an
-- object with acquire(); the client's clock and sleep are the defaults.
-- `shared(spec)`, when given (inside nginx), builds the limiter instead, so
-- that every worker process keeps the same limit.
function M.from_option(value, clock, sleep, shared)
  if value == nil then return nil end
  if type(value) == "table" and type(value.acquire) == "function" then return value end
  if type(value) ~= "table" then
    error("bad option 'rate_limit' to 'client' (table expected, got " .. type(value) .. ")", 3)
  end
  if shared and not value.clock then
    local limiter = shared(value)
    if limiter then return limiter end
  end
  return M.new{ requests = value.requests, per = value.per,
                clock = value.clock or clock, sleep = value.sleep or sleep }
end

return M
