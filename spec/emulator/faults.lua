-- Queued faults: what the control API's POST /_emulator/faults installs and
-- the router consults before answering a (non-control) request.
local common = require "common"
local json = require "json"

local M = {}

local queue = {} -- pending faults, matched in the order they were queued
local next_id = 0

local MIB = 1024 * 1024
local CHUNK = string.rep("x", 64 * 1024)

------------------------------------------------------------- validation --

local function number_in(v, min, max, integer)
  return type(v) == "number" and v >= min and v <= max
         and (not integer or v == math.floor(v))
end

-- Per type: returns an error message for a malformed spec, or nil.
local CHECKS = {
  status = function(f)
    if not number_in(f.status, 100, 599, true) then return "status must be an HTTP status" end
    if f.body ~= nil and type(f.body) ~= "string" then return "body must be a string" end
  end,
  slow = function(f)
    if f.delay == nil and f.body_delay == nil then return "slow needs delay or body_delay" end
    if f.delay ~= nil and not number_in(f.delay, 0, 3600) then return "delay must be seconds" end
    if f.body_delay ~= nil and not number_in(f.body_delay, 0, 3600) then
      return "body_delay must be seconds"
    end
  end,
  truncate = function() end,
  invalid_json = function() end,
  huge = function(f)
    f.bytes = f.bytes or 80 * MIB
    if not number_in(f.bytes, 0, 2 ^ 40, true) then return "bytes must be a byte count" end
  end,
  drop = function() end,
  raw = function(f)
    if type(f.bytes) ~= "string" or f.bytes == "" then return "raw needs bytes" end
  end,
  redirect = function(f)
    f.status = f.status or 302
    if not number_in(f.status, 300, 399, true) then return "redirect status must be 3xx" end
    if type(f.location) ~= "string" then return "redirect needs a location" end
  end,
}

-- Validates and queues a decoded fault spec; returns the stored fault, or
-- nil and a message.
function M.add(f)
  if type(f) ~= "table" then return nil, "body must be a JSON object" end
  local check = CHECKS[f.type]
  if not check then return nil, "unknown fault type: " .. tostring(f.type) end
  if f.path ~= nil and (type(f.path) ~= "string" or f.path:sub(1, 1) ~= "/") then
    return nil, "path must start with /"
  end
  if f.method ~= nil and type(f.method) ~= "string" then return nil, "method must be a string" end
  f.method = f.method and f.method:upper()
  f.times = f.times or 1
  if not (f.times == -1 or number_in(f.times, 1, 2 ^ 31, true)) then
    return nil, "times must be a positive integer or -1"
  end
  if f.headers ~= nil and type(f.headers) ~= "table" then return nil, "headers must be an object" end
  if f.content_type ~= nil and type(f.content_type) ~= "string" then
    return nil, "content_type must be a string"
  end
  if f.retry_after ~= nil and type(f.retry_after) ~= "string" and type(f.retry_after) ~= "number" then
    return nil, "retry_after must be a string or number"
  end
  local err = check(f)
  if err then return nil, err end
  next_id = next_id + 1
  f.id = next_id
  queue[#queue + 1] = f
  return f
end

function M.list()
  return json.array(queue)
end

function M.clear()
  queue = {}
end

--------------------------------------------------------------- matching --

local function path_matches(pattern, path)
  if pattern == nil then return true end
  if pattern:sub(-1) == "*" then return path:sub(1, #pattern - 1) == pattern:sub(1, -2) end
  return path == pattern
end

-- Finds the first queued fault for this request and consumes one use of it.
function M.take(method, path)
  for i, f in ipairs(queue) do
    if path_matches(f.path, path) and (f.method == nil or f.method == method) then
      if f.times > 0 then
        f.times = f.times - 1
        if f.times == 0 then table.remove(queue, i) end
      end
      return f
    end
  end
end

--------------------------------------------------------------- applying --

-- A fault's optional extra headers and content type go on whatever
-- response it produces, the normal one included.
local function decorate(f, res)
  for name, value in pairs(f.headers or {}) do res.headers[name] = value end
  res.content_type = f.content_type or res.content_type
  return res
end

-- Each applier either returns a response for the router to send or writes
-- the response itself. `answer` produces the (decorated) normal response,
-- for the fault types that mangle it rather than replace it.
local APPLY = {}

function APPLY.status(f, req)
  local res = decorate(f, f.body and common.response(f.status, f.body)
                         or common.error(common.api_of(req.path), f.status))
  if f.retry_after ~= nil then res.headers["Retry-After"] = tostring(f.retry_after) end
  return res
end

function APPLY.slow(f, req, answer)
  if f.delay then ngx.sleep(f.delay) end
  local res = answer()
  if not f.body_delay then return res end
  local half = math.floor(#res.body / 2)
  common.start(res, #res.body)
  ngx.print(res.body:sub(1, half))
  ngx.flush(true)
  ngx.sleep(f.body_delay)
  ngx.print(res.body:sub(half + 1))
end

function APPLY.truncate(f, req, answer)
  local res = answer()
  local half = math.floor(#res.body / 2)
  -- Advertise the full length (at least one byte more than we send), send
  -- half, then close: the client must see a short read, not a clean end.
  common.start(res, math.max(#res.body, half + 1))
  ngx.print(res.body:sub(1, half))
  ngx.flush(true)
  ngx.exit(444)
end

function APPLY.invalid_json(f)
  return decorate(f, common.response(200, '{"data": ['))
end

-- Streams `bytes` in 64 KiB chunks; flush(true) waits for each chunk to
-- reach the socket, so nginx never holds the whole body in memory.
function APPLY.huge(f)
  local res = decorate(f, common.response(200, nil, "application/octet-stream"))
  common.start(res, not f.chunked and f.bytes or nil)
  local left = f.bytes
  while left > 0 do
    local ok = ngx.print(left >= #CHUNK and CHUNK or CHUNK:sub(1, left))
    if not ok or not ngx.flush(true) then return end -- client went away
    left = left - #CHUNK
  end
end

function APPLY.drop()
  ngx.exit(444) -- nginx closes the connection without writing anything
end

-- Writes `bytes` as they are in place of the whole response (status line
-- and headers included) on the request's own connection, then closes it:
-- the malformed responses a hostile server sends.
function APPLY.raw(f)
  local sock = assert(ngx.req.socket(true))
  sock:send(f.bytes)
  ngx.exit(444)
end

function APPLY.redirect(f)
  return decorate(f, common.response(f.status, "", nil, { Location = f.location }))
end

-- Answers `req` according to fault `f`; answer(req) is the normal response.
function M.apply(f, req, answer)
  local res = APPLY[f.type](f, req, function() return decorate(f, answer(req)) end)
  if res then common.send(res) end
end

return M
