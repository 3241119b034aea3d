--- bearer.host: where a client runs, chosen once per process.
--
-- A host carries everything that differs between plain Lua, nginx and a
-- test with an injected clock, so that no other file has to ask:
--   transport(c_opts) -> perform(handle, method, url, headers, body, opts)
--   now()     wall-clock seconds (dates, Retry-After, token expiry)
--   clock()   seconds that never jump (spacing, backoff, deadlines)
--   sleep(s)  how a wait happens (blocking, or a yield inside nginx)
--   store(name, per) where a rate limiter keeps its slots: nil for this
--             process only, or a store shared wider (nginx: the shared dict)
--   refuse()  nil where a call may run now, else the error to return
-- The nginx host lives in bearer.ngx (the one place that knows nginx); the
-- transfer engine of a later release plugs in as another transport.
local core = require "bearer.core"

local M = {}

local function plain_transport()
  return function(handle, method, url, headers, body, opts)
    return handle:perform(method, url, headers, body, opts)
  end
end

---@class bearer.Host
---@field name string
M.plain = {
  name = "plain",
  transport = plain_transport,
  now = core.now,
  clock = core.monotime,
  sleep = core.sleep,
  store = function() return nil end,
  refuse = function() return nil end,
}

-- The ngx global of lua-nginx-module (OpenResty), with its thread pools.
local function in_nginx()
  return type(ngx) == "table" and type(ngx.get_phase) == "function"
         and type(ngx.run_worker_thread) == "function"
end

local current

--- The host of this process: nginx's inside an nginx worker, else plain.
---@return bearer.Host
function M.current()
  if not current then
    current = in_nginx() and require("bearer.ngx").host or M.plain
  end
  return current
end

--- A host like `base` (default: the current one) whose time is the given
-- `clock` (both now() and clock()) and whose waits go through `sleep`.
-- Its rate limits stay in this process: slots booked on an injected clock
-- mean nothing to another process.
---@param opts { clock: (fun(): number)|nil, sleep: (fun(seconds: number))|nil, base: bearer.Host|nil }
---@return bearer.Host
function M.test(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'test' (table expected, got " .. type(opts) .. ")", 2)
  end
  for _, name in ipairs{ "clock", "sleep" } do
    if opts[name] ~= nil and type(opts[name]) ~= "function" then
      error(("bad option '%s' to 'test' (function expected, got %s)")
            :format(name, type(opts[name])), 2)
    end
  end
  local base = opts.base or M.current()
  return {
    name = base.name .. "+test",
    transport = base.transport,
    now = opts.clock or base.now,
    clock = opts.clock or base.clock,
    sleep = opts.sleep or base.sleep,
    store = M.plain.store,
    refuse = base.refuse,
  }
end

return M
