--- bearer.host: where a client runs, chosen once per process.
--
-- A host carries everything that differs between plain Lua, nginx and a
-- test with an injected clock, so that no other file has to ask:
--   transport(c_opts) -> perform(handle, method, url, headers, body, opts)
--   now()     wall-clock seconds (dates, Retry-After, token expiry)
--   clock()   seconds that never jump (spacing, backoff, deadlines)
--   sleep(s)  how a wait happens (blocking, or a yield inside nginx)
--   store(name, per, opts) where a rate limiter keeps its slots: nil for
--             this process only, or a store shared wider (nginx: the shared
--             dict; anywhere: opts.url, a redis:// server, bearer.redis)
--   named_store(spec, name) a store with claim() named by the host (nginx:
--             a lua_shared_dict), or nil
--   redis_call(addr, timeout, argv) how a Redis command waits (bearer.redis)
--   warn(msg) a line for the operator's log
--   refuse()  nil where a call may run now, else the error to return
-- The nginx host lives in bearer.ngx (the one place that knows nginx).
-- Every transfer runs on the C core's engine (one curl multi handle per Lua
-- state); in plain Lua a call waits through bearer.scheduler, which yields
-- to bearer.gather inside one of its tasks and drives the engine here
-- otherwise.
local core = require "bearer.core"
local scheduler = require "bearer.scheduler"

--- Options of `bearer.gather`.
---@class bearer.GatherOptions
---@field concurrency integer|nil at most this many functions run at once (default: all)

---@class bearer.host
---@field plain bearer.Host the host of plain Lua
local M = {}

local function plain_transport()
  return function(handle, method, url, headers, body, opts)
    if not (opts.on_progress or scheduler.current()) then
      return handle:perform(method, url, headers, body, opts)
    end
    local t, err = handle:start(method, url, headers, body, opts)
    if not t then return nil, err end
    scheduler.wait(t, opts.on_progress and { on_progress = opts.on_progress,
                                             upload = opts.form ~= nil })
    return t:result()
  end
end

--- A store on a redis:// server when the caller names one (opts.url), for
-- host h (its redis_call, clock and warn); nil otherwise.
---@param h bearer.Host
---@param name string
---@param opts table|nil
---@return table|nil store
function M.redis_store(h, name, opts)
  if not (opts and opts.url) then return nil end
  return require("bearer.redis").store(opts.url, {
    name = name, timeout = opts.timeout, host = h, on_store_error = opts.on_store_error,
    fallback = opts.fallback, level = (opts.level or 1) + 2 })
end
local redis_store = M.redis_store

local function warn(msg) io.stderr:write("bearer: ", msg, "\n") end

---@class bearer.Host
---@field transport fun(c_opts: table): function the perform function of a client
---@field now fun(): number wall-clock seconds
---@field clock fun(): number seconds that never jump
---@field sleep fun(seconds: number) how a wait happens
---@field store fun(name: string, per: number): table|nil where a limiter keeps its slots
---@field refuse fun(): bearer.Error|nil the error to return at once, or nil
---@field gather fun(fns: (fun(): any)[], n: integer, concurrency: integer): table, table
---@field name string
M.plain = {
  name = "plain",
  transport = plain_transport,
  now = core.now,
  clock = core.monotime,
  sleep = scheduler.sleep,
  store = function(name, _, opts) return redis_store(M.plain, name, opts) end,
  named_store = function() return nil end,
  redis_call = function(...) return require("bearer.redis").blocking_call(...) end,
  warn = warn,
  refuse = function() return nil end,
  gather = scheduler.run,
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

--- bearer.gather(fns [, { concurrency = n }]) -> values, errs
-- Runs every function of the array `fns` concurrently (at most
-- `concurrency` at once, default all) on the current host and returns when
-- all have finished. values[i] is what function i returned first (nil if
-- it failed); errs[i] its error: what it raised, or the `err` of a
-- `nil, err` return; nil on success. A function that raises does not stop
-- the others.
---@param fns (fun(): any)[]
---@param opts bearer.GatherOptions|nil
---@return table values the first value of each function, by index
---@return table errs the error of each function that failed, by index
function M.gather(fns, opts)
  local n, concurrency = scheduler.gather_args(fns, opts)
  return M.current().gather(fns, n, concurrency)
end

--- A host like `base` (default: the current one) whose time is the given
-- `clock` (both now() and clock()) and whose waits go through `sleep`.
-- Its rate limits stay in this process (slots booked on an injected clock
-- mean nothing to another process) unless a redis:// store is named,
-- whose clock is the server's.
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
  local h = {
    name = base.name .. "+test",
    transport = base.transport,
    now = opts.clock or base.now,
    clock = opts.clock or base.clock,
    sleep = opts.sleep or base.sleep,
    named_store = base.named_store,
    redis_call = base.redis_call,
    warn = base.warn,
    refuse = base.refuse,
    gather = base.gather,
  }
  h.store = function(name, _, o) return redis_store(h, name, o) end
  return h
end

return M
