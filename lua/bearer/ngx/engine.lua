--- bearer.ngx.engine: the transfer engine inside an nginx worker.
--
-- The worker's engine runs libcurl on the worker's own event loop (the C
-- core's nginx way, src/engine_nginx.c): libcurl's sockets sit in the
-- worker's epoll set and its timeouts in nginx's timer tree, like
-- proxy_pass's upstream connections. A handler starts its transfer (built
-- in C: the key never becomes a Lua string) and waits on the semaphore
-- the transfer owns; the finished transfer posts it, and nginx resumes
-- the handler. No OS thread is held per call in flight, nothing polls,
-- and a call crosses no thread.
--
-- Where that way is unavailable (a core built without nginx's headers, an
-- nginx other than the one it was built against, an event method other
-- than epoll) the engine runs libcurl in a thread of its own instead:
-- one reader per worker (a timer's light thread) holds a cosocket to the
-- engine's unix socket, subscribed to every finished transfer's token;
-- the engine writes those tokens, one write per loop for all that
-- finished, and the reader posts each waiting handler's semaphore.
-- bearer.ngx.configure{ engine = "thread" } asks for that way.
--
-- Either way, a waiting handler still wakes every WAIT_SLICE seconds to
-- look at its transfer, so no call waits past its own timeout.
local core = require "bearer.core"
local semaphore = require "ngx.semaphore"

local M = {
  wait_slice = 1,            -- seconds between a waiter's own looks
  progress_every = 0.1,      -- seconds between on_progress calls
  why_thread = nil,          -- why the loop was not taken, once the engine is set up
}

-- A transfer's semaphore is the C core's (lua-nginx-module's, made and
-- freed by the transfer): waited on through ngx.semaphore's own methods.
local ffi = require "ffi"
local sema_mt = getmetatable(semaphore.new(0))

local waiting = {}   -- token -> semaphore of the handler waiting for it
-- Semaphores of finished waits, for the next ones (one new semaphore per
-- call was a cdata and its finaliser each). A waiter whose request was
-- killed mid-wait never gives its back; the pool only bounds the rest.
local spare, n_spare = {}, 0
local SPARE_MAX = 256
local path, pid      -- this worker's engine socket
local on_loop        -- this worker's engine runs on its event loop
local reader_on = false

local function reader(premature)
  if premature then reader_on = false; return end
  local sock = ngx.socket.tcp()
  sock:settimeouts(1000, 1000, 10000)  -- the engine writes a line every second
  local ok, err = sock:connect("unix:" .. path)
  if ok then ok, err = sock:send("s\n") end
  while ok do
    local line, rerr = sock:receive("*l")
    if line == "" then   -- the engine's heartbeat, once a second when idle
      if ngx.worker.exiting() then break end
    elseif line then
      -- the entry goes here, not only in wait(): a handler killed while
      -- waiting (ngx.exit, an error, a client abort) never removes its own
      local token = tonumber(line)
      local sema = waiting[token]
      if sema then
        waiting[token] = nil
        sema:post(1)
      end
    else
      err = rerr
      break
    end
  end
  sock:close()
  reader_on = false
  if err and not ngx.worker.exiting() then
    ngx.log(ngx.WARN, "bearer: engine reader: ", tostring(err), "; restarting")
    -- after a pause, so a failing socket cannot spin the worker
    ngx.timer.at(0.1, function(p)
      if not p and not reader_on then reader_on = true; reader() end
    end)
  end
end

--- This worker's engine, set up on its first call: on the worker's loop,
-- or its thread started and its reader running.
local function ready(way)
  local me = ngx.worker.pid()
  if pid ~= me then
    if way == "thread" then on_loop, M.why_thread = false, "configure{ engine = \"thread\" }"
    else on_loop, M.why_thread = core.engine_nginx() end
    if not on_loop then
      path = core.engine_thread()
      ngx.log(ngx.INFO, "bearer: transfers run on an engine thread: ", M.why_thread)
    end
    pid = me
    reader_on = false
  end
  if not on_loop and not reader_on then
    local ok = ngx.timer.at(0, reader)
    reader_on = ok and true or false
  end
end

local function report(t, progress, final)
  local now = ngx.now()
  if not final and now - (progress.reported or 0) < M.progress_every then return end
  progress.reported = now
  local down, down_total, up, up_total = t:progress()
  if progress.upload then progress.on_progress(up, up_total)
  else progress.on_progress(down, down_total) end
end

--- Yields until transfer t, on the worker's loop, is done or `seconds`
-- have passed; its semaphore is posted once, when it is done (a post
-- before the first wait is kept: that wait returns at once).
local function wait_on_loop(t, seconds, progress)
  local sema = setmetatable({ sem = ffi.cast("ngx_http_lua_sema_t *", t:waiter()) }, sema_mt)
  local slice = progress and M.progress_every or M.wait_slice
  local deadline = ngx.now() + seconds
  repeat
    sema:wait(slice)
    if progress then report(t, progress) end
  until t:done() or ngx.now() >= deadline
  if progress then report(t, progress, true) end
end

--- Yields until transfer t is done or `seconds` have passed.
local function wait(t, seconds, progress)
  local token = t:token()
  local sema
  if n_spare > 0 then
    sema = spare[n_spare]
    spare[n_spare] = nil
    n_spare = n_spare - 1
  else
    sema = semaphore.new()
  end
  -- registered before any yield: the reader cannot have passed the token
  waiting[token] = sema
  local slice = progress and M.progress_every or M.wait_slice
  local deadline = ngx.now() + seconds
  while not t:done() and ngx.now() < deadline do
    sema:wait(slice)
    if progress then report(t, progress) end
  end
  waiting[token] = nil
  -- a post that raced a timed-out wait would wake the next user early
  if sema:count() > 0 then sema:wait(0) end
  if n_spare < SPARE_MAX then
    n_spare = n_spare + 1
    spare[n_spare] = sema
  end
  if progress then report(t, progress, true) end
end

--- Runs one call on the worker's engine: the transport of a client inside
-- nginx; same contract as client:perform.
---@param handle userdata the client's C handle
---@param method string
---@param url string
---@param headers table
---@param body any
---@param opts table
---@param way "loop"|"thread"|nil the worker's first call sets the engine up this way
---@return table|nil response
---@return bearer.Error|nil err
function M.perform(handle, method, url, headers, body, opts, way)
  ready(way)
  local t, err = handle:start(method, url, headers, body, opts)
  if not t then return nil, err end
  local seconds = (opts.timeout or 600) + 5
  local progress = opts.on_progress and { on_progress = opts.on_progress, upload = opts.form ~= nil }
  if on_loop then wait_on_loop(t, seconds, progress)
  else wait(t, seconds, progress) end
  if not t:done() then
    t:close()
    return nil, require("bearer.error").new{ kind = "timeout", code = "timeout",
      message = "the transfer engine did not finish the call in time" }
  end
  -- closed at once: libcurl's handle and buffers go back while still warm,
  -- for the next call's, instead of at a later collection
  local res, rerr = t:result()
  t:close()
  return res, rerr
end

return M
