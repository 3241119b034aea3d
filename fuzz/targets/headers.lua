--- Fuzz target "headers": a response's bytes as a hostile server sends them,
-- parsed by libcurl and by the core's header handling (client.c builds the
-- headers table), then by the Lua layer (JSON bodies, error objects).
-- The harness's loopback responder (fuzz.respond) answers a real transfer
-- with the input, so the same code runs as against a network peer.
-- Input: byte 1 holds flags: bit 0, the bytes come as the second response
-- on a kept-alive connection (after a normal one); bit 1, tracing on (the
-- trace lines go through redaction). The rest is the response.
local common = require "targets.common"

-- {================ bearer API used by this target
local bearer = require "bearer"
local SECRET = "fuzzsecrettoken0123456789ABCDEF"
local function new_client(trace)
  return bearer.client{
    base_url = "http://127.0.0.1:" .. fuzz.port, key = SECRET, scheme = "token",
    max_retries = 0, timeout = 2, connect_timeout = 2,
    sleep = function() end, log = trace and function() end or nil,
  }
end
local function get(c, path) return c:request("GET", path) end
-- }================

local clients = { [false] = new_client(false), [true] = new_client(true) }
local FIRST = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

local function check_response(res)
  if type(res.status) ~= "number" or type(res.headers) ~= "table" or type(res.body) ~= "string" then
    error("malformed response table", 0)
  end
  for k, v in pairs(res.headers) do
    if type(k) ~= "string" or type(v) ~= "string" then error("bad header entry", 0) end
  end
end

return function(data)
  local flags = data:byte(1) or 0
  local response = data:sub(2)
  local reuse, trace = flags & 1 == 1, flags & 2 == 2
  local c = clients[trace]
  if reuse then
    fuzz.respond(FIRST, response)
    local res = get(c, "/first")
    if not res then return end   -- the previous connection's end raced this one
  else
    fuzz.respond(response)
  end
  local res, err = common.call("request", get, c, "/fuzz")
  if res then
    check_response(res)
  elseif type(err) == "table" then
    common.check_error(err, SECRET, "request")
  else
    error("request raised for a server's bytes: " .. tostring(err), 0)
  end
end
