--- bearer.ngx.engine: the transfer engine inside an nginx worker.
--
-- The worker's engine runs libcurl in a thread of its own (the C core's
-- threaded mode), so the worker's event loop never waits on a transfer and
-- no OS thread is held per call in flight. A handler starts its transfer
-- (built in C: the key never becomes a Lua string), then waits by reading
-- one byte from the engine's unix socket with a cosocket: the read yields
-- to nginx, and the engine thread writes that byte when the transfer is
-- done. Cosocket connections go back to nginx's keepalive pool, so a busy
-- worker connects once and then only sends a token line per call.
local core = require "bearer.core"

local M = {
  pool_size = 512,           -- keepalive connections to the engine socket per worker
  progress_every = 0.1,      -- seconds between on_progress calls
}

local path   -- this worker's engine socket (set on first use in the worker)
local pid

--- The engine socket of this worker, starting its thread on first use.
local function socket_path()
  local me = ngx.worker.pid()
  if pid ~= me then
    path = core.engine_thread()
    pid = me
  end
  return path
end

local function report(t, progress, final)
  if not (progress and progress.on_progress) then return end
  local now = ngx.now()
  if not final and now - (progress.reported or 0) < M.progress_every then return end
  progress.reported = now
  local down, down_total, up, up_total = t:progress()
  if progress.upload then progress.on_progress(up, up_total)
  else progress.on_progress(down, down_total) end
end

--- Yields until transfer t is done. `seconds` bounds the wait (the
-- transfer's own timeout ends it first); `progress` as in bearer.scheduler.
local function wait(t, seconds, progress)
  if t:done() then return report(t, progress, true) end
  local sock = ngx.socket.tcp()
  local read_ms = math.floor(((progress and progress.on_progress) and M.progress_every
                              or seconds) * 1000)
  sock:settimeouts(1000, 1000, math.max(read_ms, 1))
  local ok, err = sock:connect("unix:" .. socket_path())
  if ok then ok, err = sock:send(t:token() .. "\n") end
  local deadline = ngx.now() + seconds
  while ok do
    local byte, rerr = sock:receive(1)
    if byte then
      sock:setkeepalive(60000, M.pool_size)
      return report(t, progress, true)
    end
    if rerr ~= "timeout" or ngx.now() >= deadline then
      err = rerr
      break
    end
    report(t, progress)
  end
  sock:close()
  -- the socket failed (should not happen): wait by looking, bounded
  ngx.log(ngx.WARN, "bearer: engine socket: ", tostring(err), "; waiting by polling")
  while not t:done() and ngx.now() < deadline do ngx.sleep(0.005) end
  report(t, progress, true)
end

--- Runs one call on the worker's engine: the transport of a client inside
-- nginx; same contract as client:perform.
---@param handle userdata the client's C handle
---@param method string
---@param url string
---@param headers table
---@param body any
---@param opts table
---@return table|nil response
---@return bearer.Error|nil err
function M.perform(handle, method, url, headers, body, opts)
  socket_path()
  local t, err = handle:start(method, url, headers, body, opts)
  if not t then return nil, err end
  local seconds = ((opts and opts.timeout) or 600) + 5
  wait(t, seconds, opts and opts.on_progress and { on_progress = opts.on_progress,
                                                   upload = opts.form ~= nil })
  if not t:done() then
    t:close()
    return nil, require("bearer.error").new{ kind = "timeout", code = "timeout",
      message = "the transfer engine did not finish the call in time" }
  end
  return t:result()
end

return M
