--- Fuzz target "error_body": what the Lua layer makes of an error response
-- (bearer.error.from_response with the generic, Overten and Optiverse body
-- parsers: codes, messages, FastAPI details, Retry-After, request ids) and
-- the JSON path of a 2xx body (bearer.json.decode).
-- Input: "<status digits>\255<header lines>\255<body>"; the status's last
-- digit picks the parser.
local common = require "targets.common"

-- {================ bearer API used by this target
local bearer = require "bearer"
local core = require "bearer.core"
local errors = require "bearer.error"
local json = require "bearer.json"   -- the codec the client decodes with
local PARSERS = { false, require("bearer.overten").parse_error, require("bearer.optiverse").parse_error }
local SECRET = "fuzzsecrettoken0123456789ABCDEF"
local KEY = bearer.key(SECRET, { scheme = "token" })
local function redact(s) return core.redact(s, KEY) end
local function from_response(res, now, parse) return errors.from_response(res, redact, now, parse or nil) end
local function decode_body(body) return json.decode(body) end
-- }================

local NOW = 1700000000

-- The headers table as client.c builds it: lower-case names, repeats joined.
local function headers_of(text)
  local h = {}
  for line in text:gmatch("[^\n]+") do
    local name, value = line:match("^([^:]+):[ \t]*(.-)[ \t\r]*$")
    if name then
      name = name:lower()
      h[name] = h[name] and (h[name] .. ", " .. value) or value
    end
  end
  return h
end

return function(data)
  local p = common.split(data, 3)
  local status = tonumber(p[1]:match("^%d%d%d$") or "500")
  if status < 400 then status = status % 600 + 400 end
  local parse = PARSERS[status % #PARSERS + 1]
  local res = { status = status, headers = headers_of(p[2]), body = p[3] }
  local err = common.call("from_response", from_response, res, NOW, parse)
  if err == nil then error("from_response gave no error object", 0) end
  common.check_error(err, SECRET, "from_response")
  if err.status ~= status then error("status not kept", 0) end
  if err.retry_after ~= nil and not (type(err.retry_after) == "number" and err.retry_after >= 0) then
    error("bad retry_after " .. tostring(err.retry_after), 0)
  end
  if type(err.body) == "string" and err.body:find(SECRET, 1, true) then
    error("the secret shows in err.body", 0)
  end
  common.call("decode", decode_body, p[3])
end
