--- bearer.ngx.redis: the nginx host's redis_call (bearer.redis).
--
-- hiredis writes each command (core.redis_format) and parses each reply
-- (core.redis_reader); the bytes travel on a cosocket, so a worker waits
-- for Redis the way it waits for anything else: in its event loop. The
-- connection goes back to the cosocket pool after each command, named
-- per server and user; AUTH and SELECT run on a fresh one only.
-- Where no cosocket may run (init_worker, set_by_lua, header filters) a
-- command blocks on hiredis if bearer.ngx.configure{ allow_blocking =
-- true } allowed it, and is refused otherwise.
local core = require "bearer.core"

local M = {}

M.KEEPALIVE_MS = 60000   -- an idle pooled connection lives this long
M.POOL_SIZE = 32         -- pooled connections per server, per worker

local function store_error(why) return require("bearer.redis").store_error(why) end

-- One command on an open socket; answers as src/redis.c does.
local function roundtrip(sock, argv)
  local sent, serr = sock:send(core.redis_format(argv))
  if not sent then return nil, store_error(serr) end
  local reader = core.redis_reader()
  while true do
    local ok, value, msg = reader:get()
    if ok ~= false then return ok, value, msg end
    local data, rerr = sock:receiveany(65536)
    if not data then return nil, store_error(rerr) end
    reader:feed(data)
  end
end

--- One command on the worker's cosocket to addr, hiredis formatting the
-- request and reading the reply: the nginx host's redis_call.
---@param addr table a parsed redis:// address (bearer.redis.parse)
---@param timeout number seconds for connect, send and each read
---@param argv string[] the command and its arguments
---@return any|nil value, table|nil err
function M.call(addr, timeout, argv)
  local bngx = require "bearer.ngx"
  if not bngx.yieldable() then
    local refusal = bngx.refusal()
    if refusal then return nil, refusal end
    return require("bearer.redis").blocking_call(addr, timeout, argv)
  end
  local sock = ngx.socket.tcp()
  local ms = math.max(1, math.floor(timeout * 1000))
  sock:settimeouts(ms, ms, ms)
  local ok, err = sock:connect(addr.host, addr.port, { pool = addr.pool })
  if not ok then return nil, store_error(err) end
  if sock:getreusedtimes() == 0 then
    for _, cmd in ipairs(addr.setup) do
      local done, e, msg = roundtrip(sock, cmd)
      if not done or msg then
        sock:close()
        return nil, e or store_error(cmd[1] .. " refused: " .. msg)
      end
    end
  end
  local done, value, msg = roundtrip(sock, argv)
  if done then sock:setkeepalive(M.KEEPALIVE_MS, M.POOL_SIZE) else sock:close() end
  return done, value, msg
end

return M
