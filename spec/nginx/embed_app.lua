-- The handlers behind spec/nginx/embed.conf.in: bearer used from nginx
-- as a user would, against the emulator at BEARER_EMULATOR_URL.
local bearer = require "bearer"
local cjson = require "cjson.safe"

local M = {}
local KEY = "sk_live_0123456789abcdefABCDEF012345"
local init_result

local function client(extra)
  local opts = { base_url = os.getenv("BEARER_EMULATOR_URL"), key = KEY, max_retries = 0 }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return bearer.client(opts)
end

-- One client per worker, made on first use (not in the master): the
-- curl handles it drives live in the pool threads anyway.
local shared_client
local function the_client()
  shared_client = shared_client or client()
  return shared_client
end

local function call(path)
  local res, err = the_client():get(path)
  if res then return { status = res.status, json = res.json } end
  return { error = { kind = err.kind, code = err.code, message = err.message } }
end

-- Made in the master, used once there (blocking, opted in) and then in
-- the workers after the fork, with blocking allowed in set_by_lua.
local forked_client

-- init_by_lua cannot yield: bearer must refuse, not block nginx; with
-- blocking allowed, the master makes a call (its curl handle and
-- connection are then inherited by every worker).
function M.init_phase_call()
  local c = bearer.client{ base_url = "http://127.0.0.1:1", key = KEY, max_retries = 0 }
  local res, err = c:get("/x")
  init_result = { ok = res ~= nil, kind = err and err.kind, code = err and err.code }
  -- a rate-limited client is refused before its limiter could make the
  -- (blocked) master wait: two calls, both refused at once
  local limited = bearer.client{ base_url = "http://127.0.0.1:1", key = KEY,
                                 rate_limit = { requests = 1, per = 180 } }
  local t0 = require("bearer.core").monotime()
  limited:get("/x")
  local _, lerr = limited:get("/x")
  init_result.limited_code = lerr and lerr.code
  init_result.limited_seconds = require("bearer.core").monotime() - t0
  local bngx = require "bearer.ngx"
  bngx.configure{ allow_blocking = true }
  forked_client = client()
  local first = forked_client:get("/echo/fork-master")
  init_result.master_call = first and first.status
  init_result.master_connection = first and first.json and first.json.connection
  bngx.configure{ allow_blocking = false }
end

-- set_by_lua cannot yield either: the call blocks (opted in) on the
-- client made before the fork, which must not reuse the master's handle.
function M.fork_call()
  local bngx = require "bearer.ngx"
  bngx.configure{ allow_blocking = true }
  local res, err = forked_client:get("/echo/fork-worker")
  bngx.configure{ allow_blocking = false }
  return cjson.encode{ status = res and res.status, error = err and err.code }
end

-- Blocking calls (set_by_lua, blocking allowed) on a worker whose engine
-- already runs in its thread: each fails at once (nothing listens on port
-- 1), so the engine thread often finishes a transfer before the worker's
-- thread starts waiting for it. Returns how many ended with each code.
function M.blocking_calls(n)
  local bngx = require "bearer.ngx"
  local c = bearer.client{ base_url = "http://127.0.0.1:1", key = KEY, max_retries = 0 }
  local codes = {}
  bngx.configure{ allow_blocking = true }
  local ok, why = pcall(function()
    for _ = 1, n do
      local _, err = c:get("/x")
      local code = err and err.code or "ok"
      codes[code] = (codes[code] or 0) + 1
    end
  end)
  bngx.configure{ allow_blocking = false }
  if not ok then codes.raised = tostring(why) end
  return cjson.encode(codes)
end

local routes = {}

routes["/app/fast"] = function() return { fast = true, pid = ngx.worker.pid() } end

-- Five calls from ngx.thread-spawned light threads (bearer.gather inside
-- nginx): they overlap on the worker's engine.
routes["/app/gather"] = function()
  local t0 = ngx.now()
  local fns = {}
  for i = 1, 5 do
    fns[i] = function() return assert(the_client():get("/echo/gather" .. i)).status end
  end
  local values, errs = bearer.gather(fns)
  ngx.update_time()
  return { values = values, errors = #errs, seconds = ngx.now() - t0 }
end

routes["/app/call"] = function()
  return call("/echo/" .. (ngx.var.arg_tag or "call"))
end

routes["/app/timer"] = function()
  local id = tostring(ngx.now()) .. ":" .. math.random()
  ngx.timer.at(0, function()
    ngx.shared.results:set(id, cjson.encode(call("/echo/timer")), 30)
  end)
  for _ = 1, 200 do
    local got = ngx.shared.results:get(id)
    if got then return cjson.decode(got) end
    ngx.sleep(0.01)
  end
  return { error = { code = "timer_never_ran" } }
end

routes["/app/limited"] = function()
  local c = client{ rate_limit = { requests = 2, per = 1 } }
  local res, err = c:get("/echo/limited")
  return { status = res and res.status, error = err and err.code, pid = ngx.worker.pid() }
end

routes["/app/init"] = function() return init_result end

-- A call to 127.0.0.1:?port with a short connect timeout (the spec makes
-- that port a black hole): its error code.
routes["/app/connect"] = function()
  local c = bearer.client{ base_url = "http://127.0.0.1:" .. tonumber(ngx.var.arg_port), key = KEY,
                           max_retries = 0, connect_timeout = 0.2 }
  local res, err = c:get("/x")
  return { status = res and res.status, code = err and err.code }
end

-- A handler that leaves ten calls in flight on the engine and goes away:
-- by raising (how=error) or by ngx.exit (how=exit), which kills the light
-- threads waiting for them. The engine finishes them for nobody.
routes["/app/abandon"] = function()
  for i = 1, 10 do ngx.thread.spawn(call, "/echo/abandoned" .. i) end
  ngx.sleep(0.05)
  if ngx.var.arg_how == "exit" then return ngx.exit(204) end
  error("the handler gives up with calls in flight")
end

-- The worker's engine: how it runs, why not on the loop, and the worker's
-- OS threads (an engine thread is one more).
routes["/app/engine"] = function()
  local f = assert(io.open("/proc/self/status"))
  local n = tonumber(f:read("*a"):match("\nThreads:%s*(%d+)"))
  f:close()
  return { engine = tostring(require("bearer.core").engine()), threads = n,
           why_thread = require("bearer.ngx.engine").why_thread or false }
end

-- An 8 MB download to a file with on_progress: what the handler saw.
routes["/app/progress"] = function()
  local path = os.tmpname()
  os.remove(path)   -- a sink is a new file
  local seen, growing = {}, true
  local res, err = client{ timeout = 30 }:get("/echo/big", { sink = path, on_progress = function(done, total)
    if #seen > 0 and done < seen[#seen][1] then growing = false end
    seen[#seen + 1] = { done, total or false }
  end })
  os.remove(path)
  if not res then return { error = err.code } end
  return { bytes = res.bytes, calls = #seen, last = seen[#seen], growing = growing }
end

-- An engine thread asked for once the engine runs on the loop.
routes["/app/engine_thread"] = function()
  local ok, err = pcall(require("bearer.core").engine_thread)
  return { ok = ok, err = not ok and tostring(err) or false }
end

-- What the C core says when a thread pool's Lua VM asks for the loop.
routes["/app/engine_in_pool"] = function()
  local ok, on_loop, why = ngx.run_worker_thread("bearer", "bearer.core", "engine_nginx")
  return { ran = ok, on_loop = on_loop, why = why }
end

-- Calls n slow routes at once, each on a connection of its own (a
-- client per call): with few worker_connections some find none.
routes["/app/many"] = function()
  local n = tonumber(ngx.var.arg_n)
  local threads, codes = {}, {}
  for i = 1, n do
    threads[i] = ngx.thread.spawn(function()
      local res, err = client{ timeout = 10 }:get("/echo/many" .. i)
      return res and "ok" or err.code
    end)
  end
  for i = 1, n do
    local _, code = ngx.thread.wait(threads[i])
    codes[code] = (codes[code] or 0) + 1
  end
  return codes
end

-- Collects this worker's garbage (transfers nobody holds any more; with
-- ?collect=no it does not) and says how many transfers its engine still
-- runs. On the worker's loop an abandoned transfer runs until it is
-- collected; on an engine thread, until it is done.
routes["/app/gc"] = function()
  if ngx.var.arg_collect ~= "no" then
    collectgarbage()
    collectgarbage()
  end
  local _, running = require("bearer.core").engine():step()
  return { pid = ngx.worker.pid(), running = running }
end

-- Two polls of the Optiverse watcher (1 s interval, as a key with a higher
-- limit could): run from two workers at once, their polls share one slot.
routes["/app/watch"] = function()
  local ov = require("bearer.optiverse").client{
    api_key = "optiuser_v1_test_4f9a2c1d8e7b6a5f",
    base_url = os.getenv("BEARER_EMULATOR_URL") .. "/external-api" }
  local n = 0
  for _ in ov:watch_records{ since = "2026-11-01T00:00:00Z", interval = 1,
                             i_have_a_higher_limit = true, max_polls = 2 } do
    n = n + 1
  end
  return { records = n, pid = ngx.worker.pid() }
end

routes["/app/webhook-events"] = function()
  return { events = cjson.decode(ngx.shared.results:get("events") or "[]") }
end

function M.content()
  local route = routes[ngx.var.uri]
  if not route then return ngx.exit(404) end
  ngx.say(cjson.encode(route()))
end

function M.access()
  ngx.ctx.result = cjson.encode(call("/echo/" .. ngx.get_phase()))
end

function M.webhook()
  require("bearer.ngx").webhook{
    secret = bearer.key(os.getenv("BEARER_TEST_WEBHOOK_SECRET"), { scheme = "webhook" }),
    handler = function(event)
      local events = cjson.decode(ngx.shared.results:get("events") or "[]")
      events[#events + 1] = event
      ngx.shared.results:set("events", cjson.encode(events))
    end,
  }
end

return M
