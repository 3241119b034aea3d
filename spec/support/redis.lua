--- A real redis-server (Debian's) for specs: a free 127.0.0.1 port, a temp
-- dir, no persistence; stopped by pid.
--
--   local redis = require "support.redis"
--   local server = redis.start()     -- server.url = "redis://127.0.0.1:N"
--   server:pause() / server:resume() -- SIGSTOP/SIGCONT: a server that hangs
--   redis.start{ backlog = 0 }       -- its listen backlog (default 511), for:
--   server:black_hole()              -- paused, one connection queued: no other
--                                    -- connect to its port completes
--   server:stop()
local core = require "bearer.core"
local files = require "support.files"

local M = {}
M.__index = M

local function answers(port)
  local conn = core.redis_connect("127.0.0.1", port, 0.5)
  if not conn then return false end
  local ok, pong = conn:command{ "PING" }
  conn:close()
  return ok and pong == "PONG"
end

function M.start(opts)
  local backlog = opts and opts.backlog or 511
  assert(core.redis, "bearer was built without hiredis (libhiredis-dev)")
  math.randomseed(os.time() + math.floor(core.monotime() * 1e6) % 100000)
  for _ = 1, 20 do
    local port = math.random(20000, 60000)
    if not answers(port) then
      local dir = files.tmpdir()
      local ok = os.execute(("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no "
        .. "--tcp-backlog %d --dir %s --logfile %s/log --pidfile %s/pid --daemonize yes >/dev/null 2>&1")
        :format(port, backlog, dir, dir, dir))
      local self = setmetatable({ port = port, dir = dir, url = "redis://127.0.0.1:" .. port,
                                  backlog = backlog }, M)
      for _ = 1, 100 do
        if ok and answers(port) then
          self.pid = tonumber(files.read(dir .. "/pid"))
          if self.pid then return self end
        end
        core.sleep(0.02)
      end
      self:stop()
    end
  end
  error("no redis-server started (port in use 20 times?)")
end

--- One command on a fresh connection (the spec's view of the server).
function M:command(argv)
  local conn = assert(core.redis_connect("127.0.0.1", self.port, 2))
  local ok, value, msg = conn:command(argv)
  conn:close()
  assert(ok and not msg, msg)
  return value
end

function M:black_hole()
  assert(self.backlog == 0, "black_hole() needs redis.start{ backlog = 0 }")
  self:pause()
  self.queued = assert(core.redis_connect("127.0.0.1", self.port, 1))
  assert(core.redis_connect("127.0.0.1", self.port, 0.2) == nil, "a connect completed: no black hole")
end

function M:pause() os.execute("kill -STOP " .. self.pid) end
function M:resume() os.execute("kill -CONT " .. self.pid) end

function M:stop()
  if self.pid then
    os.execute("kill -CONT " .. self.pid .. " 2>/dev/null; kill " .. self.pid .. " 2>/dev/null")
    -- gone, or a zombie (a container's init may never reap the daemon)
    for _ = 1, 100 do
      local stat = files.read("/proc/" .. self.pid .. "/stat")
      if not stat or stat:match("^%d+ %b() (%a)") == "Z" then break end
      core.sleep(0.02)
    end
    self.pid = nil
  end
  if self.dir then files.remove(self.dir); self.dir = nil end
end

return M
