--- bearer.ngx: the SDK inside nginx (lua-nginx-module / OpenResty).
--
-- bearer.host picks M.host when the `ngx` global is present: this file is
-- the one place that knows nginx. Users call it for the webhook receiver,
-- the shared limiter, and the settings below.
--
-- Transfers run on the worker's transfer engine (bearer.ngx.engine, the
-- default): libcurl runs on the worker's own event loop, the handler's
-- coroutine yields on a semaphore until its transfer is done, so the event
-- loop never blocks and no thread is held per call in flight. Where the
-- core cannot use the loop it runs libcurl in an engine thread of its own
-- (configure{ engine = "thread" } asks for that).
--
-- configure{ transport = "threads" } keeps the older way: transfers run in
-- an nginx thread pool (ngx.run_worker_thread), the request's coroutine
-- yielding while a pool thread drives libcurl. It is better only where a
-- process may not start threads of its own, or to keep each call's
-- libcurl work off the worker's core (a pool thread can run on another);
-- it holds one pool thread per call in flight. Each call borrows one of the module's
-- thread Lua VMs (lua_worker_thread_vm_pool_size, 100 by default; a call
-- finding none fails at once), which keeps one curl handle per set of
-- transport options, so connections stay alive across requests. Each
-- worker bounds its calls in flight (`concurrency`) so that a burst queues
-- here instead of failing: leases held by coroutines in a weak table, so a
-- request killed mid-call (its coroutine never resumed) gives its lease
-- back when it is collected, where a semaphore's slot would be lost. A key cannot cross into that VM
-- (only plain values do), so its bytes go through the C vault by number.
--
-- nginx.conf needs two lines (names are the defaults, see configure):
--     thread_pool bearer threads=16;      # main context
--     lua_shared_dict bearer 1m;          # http context
local core = require "bearer.core"
local errors = require "bearer.error"

--- Options of `bearer.ngx.configure{...}`.
---@class bearer.ngx.Options
---@field transport "engine"|"threads"|nil the worker's engine (default) or the thread pool
---@field engine "loop"|"thread"|nil the engine on the worker's event loop (default) or in a thread
---@field pool string|nil the thread pool's name (default "bearer")
---@field dict string|nil the shared dict's name (default "bearer")
---@field allow_blocking boolean|nil let phases that cannot yield block
---@field concurrency integer|nil transfers in flight per worker (thread pool, default 16)
---@field queue_timeout number|nil seconds a call waits for a slot (default 60)

---@class bearer.ngx
---@field host bearer.Host the host of a client inside an nginx worker
local M = {
  pool = "bearer",          -- thread_pool name
  dict = "bearer",          -- lua_shared_dict name
  allow_blocking = false,   -- block the worker where no yield is possible
  concurrency = 16,         -- transfers in flight per worker (<= the VM pool size)
  queue_timeout = 60,       -- seconds a transfer may wait for its turn
  via = "engine",           -- configure{ transport = }: "engine", or "threads" (the pool)
  engine = "loop",          -- the engine on the worker's event loop, or "thread": its own
  store = nil,              -- a redis:// URL: every client's rate limit and watch slot there
  on_store_error = "error", -- or "local": the shared dict's limit while that server fails
}

local leases = setmetatable({}, { __mode = "k" })   -- coroutine -> true, in flight
local QUEUE_POLL = 0.002                             -- seconds between looks at the queue

local function leases_held()
  local n = 0
  for _ in pairs(leases) do n = n + 1 end
  return n
end

-- Phases where a coroutine may yield (run_worker_thread, ngx.sleep).
local YIELDABLE = { rewrite = true, access = true, content = true, timer = true }

---@class bearer.ngx.Settings
---@field transport? "engine"|"threads"
---@field engine? "loop"|"thread"
---@field pool? string
---@field dict? string
---@field allow_blocking? boolean
---@field concurrency? integer
---@field queue_timeout? number
---@field store? string
---@field on_store_error? "error"|"local"

--- bearer.ngx.configure{ transport =, engine =, pool =, dict =, allow_blocking =,
--   concurrency =, queue_timeout =, store =, on_store_error = }
---@param opts bearer.ngx.Settings
function M.configure(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'configure' (table expected, got " .. type(opts) .. ")", 2)
  end
  for name, v in pairs(opts) do
    local k = name == "transport" and "via" or name
    if k == "pool" or k == "dict" then
      if type(v) ~= "string" then error(("bad option '%s' to 'configure' (string expected)"):format(k), 2) end
    elseif k == "allow_blocking" then
      if type(v) ~= "boolean" then error("bad option 'allow_blocking' to 'configure' (boolean expected)", 2) end
    elseif k == "via" then
      if v ~= "engine" and v ~= "threads" then
        error("bad option 'transport' to 'configure' (\"engine\" or \"threads\" expected)", 2)
      end
    elseif k == "engine" then
      if v ~= "loop" and v ~= "thread" then
        error("bad option 'engine' to 'configure' (\"loop\" or \"thread\" expected)", 2)
      end
    elseif k == "store" or k == "on_store_error" then
      local ratelimit = require "bearer.ratelimit"
      if k == "store" then ratelimit.check_store_options(v, nil, "configure", 2)
      else ratelimit.check_store_options(nil, v, "configure", 2) end
    elseif k == "concurrency" or k == "queue_timeout" then
      if type(v) ~= "number" or v <= 0 or (k == "concurrency" and v % 1 ~= 0) then
        error(("bad option '%s' to 'configure' (positive %s expected)")
              :format(k, k == "concurrency" and "integer" or "number"), 2)
      end
    else
      error(("bad option '%s' to 'configure' (unknown option)"):format(tostring(k)), 2)
    end
    M[k] = v
  end
end

--- Whether this phase may yield (run a transfer, sleep).
---@return boolean
function M.yieldable()
  return YIELDABLE[ngx.get_phase()] == true
end

--- The default sleep inside nginx: yields where it may; blocks only where
-- the user allowed blocking (elsewhere no transfer starts to wait for).
---@param seconds number
function M.sleep(seconds)
  if M.yieldable() then return ngx.sleep(seconds) end
  return core.sleep(seconds)
end

local function blocking_error()
  return errors.new{
    kind = "config", code = "blocking_context",
    message = ("bearer cannot make a request in %s without blocking the nginx worker; "
               .. "call it from a request handler (rewrite, access, content) or an "
               .. "ngx.timer.at callback, or allow blocking with "
               .. "require('bearer.ngx').configure{ allow_blocking = true }"):format(ngx.get_phase()),
  }
end

--- nil where a transfer may wait here, else the error to return at once
-- (before any rate-limit wait, which could not yield either).
---@return bearer.Error|nil
function M.refusal()
  if M.yieldable() or M.allow_blocking then return nil end
  return blocking_error()
end

-- Runs one transfer on the pool once this coroutine holds a lease; the
-- module's "no available Lua vm" (a VM pool smaller than `concurrency`)
-- waits like a busy queue.
local function run_on_pool(spec)
  local co = coroutine.running()
  local deadline = ngx.now() + M.queue_timeout
  while true do
    if leases_held() < M.concurrency then
      leases[co] = true
      local called, ok, res, err = pcall(ngx.run_worker_thread, M.pool, "bearer.ngx.thread",
                                         "perform", spec)
      leases[co] = nil
      if not called then error(ok, 0) end
      if ok or tostring(res):find("no available Lua vm", 1, true) == nil then
        return ok, res, err
      end
    end
    ngx.update_time()
    if ngx.now() >= deadline then
      return nil, errors.new{ kind = "timeout", code = "queue_timeout", retryable = true,
        message = ("no bearer transfer slot in this worker within %s s; raise "
                   .. "bearer.ngx.configure{ concurrency = } (and lua_worker_thread_vm_pool_size)")
                  :format(M.queue_timeout) }
    end
    ngx.sleep(QUEUE_POLL)
  end
end

-- A stable name for a set of transport options: pool threads keep one curl
-- handle per name, shared by every client with the same options.
local function options_id(options)
  local names = {}
  for k in pairs(options) do names[#names + 1] = k end
  table.sort(names)
  local parts = {}
  for _, k in ipairs(names) do parts[#parts + 1] = k .. "=" .. tostring(options[k]) end
  return table.concat(parts, "\n")
end

--- The perform function of a client living in an nginx worker:
-- same contract as client:perform, run on the worker's engine (or the thread pool).
---@param c_opts table the client's transport options
---@return function perform
function M.transport(c_opts)
  local options = {}
  for k, v in pairs(c_opts) do
    if k ~= "key" then options[k] = v end
  end
  local id = options_id(options)
  local engine   -- bearer.ngx.engine, required on the first call (not per call)
  return function(client, method, url, headers, body, opts)
    if not M.yieldable() then
      if M.allow_blocking then return client:perform(method, url, headers, body, opts) end
      return nil, blocking_error()
    end
    if M.via == "engine" then
      engine = engine or require "bearer.ngx.engine"
      return engine.perform(client, method, url, headers, body, opts, M.engine)
    end
    local key = client:key()
    if key and key:is_closed() then
      error("attempt to use a closed bearer.Key (the client's key was closed)", 3)
    end
    local with_key = key ~= nil and opts.credentials ~= false
    local spec = { id = id, options = options, vault = with_key and client:share_key() or nil,
                   method = method, url = url, headers = headers, body = body, opts = opts }
    local ok, res, err = run_on_pool(spec)
    if ok and res == nil and err and err.code == "vault_missing" and with_key then
      -- the key changed while this call waited (set_key): send the new one
      spec.vault = client:share_key()
      ok, res, err = run_on_pool(spec)
    end
    if ok == nil then return nil, res end   -- queue timeout
    if not ok then
      return nil, errors.new{
        kind = "config", code = "thread_pool",
        message = ("nginx thread pool '%s' failed: %s (nginx.conf needs: thread_pool %s "
                   .. "threads=16; and lua_worker_thread_vm_pool_size at least "
                   .. "bearer.ngx.configure{ concurrency = } per worker)"):format(M.pool, tostring(res), M.pool),
      }
    end
    if res then return res end
    return nil, core.error_new(err)
  end
end

-- A rate-limit store every worker shares; nil (and a warning) when the
-- shared dict is missing, so the limit holds per worker.
local function dict_store(name, per)
  local store = require("bearer.ngx.limiter").store(name, M.dict, per)
  if not store then
    ngx.log(ngx.WARN, "bearer: lua_shared_dict '", M.dict, "' is missing; the rate limit ",
            "holds per worker only (nginx.conf: lua_shared_dict ", M.dict, " 1m;)")
  end
  return store
end

-- Every host shares the store on a redis:// server (the caller's, or
-- configure{ store = }), falling back to the shared dict's; every worker
-- shares the dict's otherwise.
local function shared_store(name, per, opts)
  local url = opts and opts.url or M.store
  if not url then return dict_store(name, per) end
  return require("bearer.host").redis_store(M.host, name, {
    url = url, timeout = opts and opts.timeout,
    on_store_error = opts and opts.on_store_error or M.on_store_error,
    fallback = dict_store(name, per) })
end

local function warn(msg) ngx.log(ngx.WARN, "bearer: ", msg) end

--- bearer.gather inside nginx (the host's gather): `concurrency` light
-- threads take the functions in order; every wait inside them already
-- yields to nginx's event loop. Outside a yieldable phase the functions
-- run one after another (each call blocks, if blocking is allowed).
local function gather(fns, n, concurrency)
  local scheduler = require "bearer.scheduler"
  if not M.yieldable() then return scheduler.run(fns, n, 1) end
  local values, errs = {}, {}
  local next_i = 1
  local function worker()
    while next_i <= n do
      local i = next_i
      next_i = next_i + 1
      scheduler.settle(values, errs, i, pcall(fns[i]))
    end
  end
  local threads = {}
  for k = 1, math.min(n, concurrency) do threads[k] = ngx.thread.spawn(worker) end
  for k = 1, #threads do ngx.thread.wait(threads[k]) end
  return values, errs
end

--- The host of a client made inside an nginx worker (bearer.host): the
-- engine (or thread-pool) transport, waits that yield, limits in the
-- shared dict or on a redis:// server (through cosockets).
M.host = {
  name = "nginx",
  transport = M.transport,
  now = core.now,
  clock = core.monotime,
  sleep = M.sleep,
  store = shared_store,
  named_store = function(dict_name, name) return require("bearer.ngx.limiter").store(name, dict_name) end,
  redis_call = function(...) return require("bearer.ngx.redis").call(...) end,
  warn = warn,
  refuse = M.refusal,
  gather = gather,
}

--- bearer.ngx.limiter{ name =, requests =, per = [, dict = ] }: a limiter every worker shares.
---@param opts { name: string, requests: integer, per: number, dict: string|nil }
---@return bearer.Limiter
M.limiter = function(opts) return require("bearer.ngx.limiter").new(opts) end
--- bearer.ngx.webhook{ secret =, handler = fn(event) [, tolerance = 300] }: answers an Overten delivery
-- (content_by_lua*), then hands the event to `handler` in a timer.
---@param opts { secret: string|bearer.Key, handler: fun(event: table), tolerance: number|nil }
M.webhook = function(opts) return require("bearer.ngx.webhook").receive(opts) end

return M
