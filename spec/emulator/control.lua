-- The control API under /_emulator/ (no auth): health, reset, the request
-- log, faults, config switches, and seeding extra Optiverse records.
local common = require "common"
local json = require "json"
local faults = require "faults"
local overten = require "overten"
local optiverse = require "optiverse"

local M = {}

local log = {}

-- Switches set by POST /_emulator/config; absent means off. The API modules
-- receive this table from the router rather than requiring this module.
M.config = {}

local function positive(v) return type(v) == "number" and v > 0 end

-- Per switch: returns an error message for a malformed value, or nil.
local SWITCHES = {
  optiverse_poll_limit = function(v)
    if type(v) ~= "table" or not positive(v.requests) or v.requests ~= math.floor(v.requests)
       or not positive(v.per) then
      return "optiverse_poll_limit must be { requests = integer > 0, per = seconds > 0 }"
    end
  end,
  -- Overten sync generation is promoted to 202 when the emulated job
  -- length (90 s) exceeds it (overten_gen.lua).
  sync_ceiling = function(v)
    if type(v) ~= "number" or v < 0 then return "sync_ceiling must be seconds >= 0" end
  end,
}

function M.record(req, fault)
  log[#log + 1] = {
    request_id = req.request_id, method = req.method, uri = req.uri, path = req.path,
    query = req.query, headers = req.headers, body_len = #req.body,
    connection = req.connection, connection_requests = req.connection_requests,
    time = req.time, fault = fault and fault.type or json.null,
  }
end

local function ok(value) return common.json(200, value) end

local function bad(message) return common.json(400, { ok = false, error = message }) end

-- The request body as a JSON object, or nil and an error response.
local function body_object(req)
  local value = json.decode(req.body)
  if type(value) ~= "table" then return nil, bad("body must be a JSON object") end
  return value
end

local function reset()
  log = {}
  faults.clear()
  M.config = {}
  overten.reset()
  optiverse.reset()
  return ok { ok = true }
end

local function add_fault(req)
  local spec, err = body_object(req)
  if not spec then return err end
  local fault, message = faults.add(spec)
  if not fault then return bad(message) end
  return common.json(201, { ok = true, fault = fault })
end

-- Validates every switch first so a bad request changes nothing.
local function set_config(req)
  local changes, err = body_object(req)
  if not changes then return err end
  for name, value in pairs(changes) do
    local check = SWITCHES[name]
    if not check then return bad("unknown switch: " .. tostring(name)) end
    local message = value ~= json.null and check(value)
    if message then return bad(message) end
  end
  for name, value in pairs(changes) do
    M.config[name] = value ~= json.null and value or nil
  end
  return ok { ok = true, config = M.config }
end

local function insert_records(req)
  local body, err = body_object(req)
  if not body then return err end
  local count = body.count
  if type(count) ~= "number" or count < 1 or count > 10000 or count ~= math.floor(count) then
    return bad("count must be an integer between 1 and 10000")
  end
  local ids, total = optiverse.insert_records(count)
  return common.json(201, { ok = true, inserted = ids, total = total })
end

-- Moves the Optiverse poll limit's clock forward (specs with a fake clock).
local function advance_clock(req)
  local body, err = body_object(req)
  if not body then return err end
  local seconds = body.advance
  if type(seconds) ~= "number" or seconds < 0 or seconds > 1e9 then
    return bad("advance must be seconds >= 0")
  end
  return ok { ok = true, now = optiverse.advance_clock(seconds) }
end

local ROUTES = {
  { "GET", "^/health$", function() return ok { ok = true } end },
  { "POST", "^/reset$", reset },
  { "GET", "^/requests$", function() return ok(json.array(log)) end },
  { "DELETE", "^/requests$", function() log = {}; return ok { ok = true } end },
  { "GET", "^/faults$", function() return ok(faults.list()) end },
  { "POST", "^/faults$", add_fault },
  { "DELETE", "^/faults$", function() faults.clear(); return ok { ok = true } end },
  { "GET", "^/config$", function() return ok(M.config) end },
  { "POST", "^/config$", set_config },
  { "POST", "^/optiverse/records$", insert_records },
  { "POST", "^/optiverse/clock$", advance_clock },
}

function M.handle(req)
  local sub = req.path:sub(#"/_emulator" + 1)
  -- Overten's own control endpoints and the webhook inbox (overten_webhooks.lua)
  if sub == "/inbox" or sub:sub(1, 7) == "/inbox/" or sub:sub(1, 9) == "/overten/" then
    return overten.control(req, sub)
  end
  local handler, allowed = common.route(ROUTES, req.method, sub)
  if handler then return handler(req) end
  if allowed then
    return common.json(405, { ok = false, error = "method not allowed" }, { Allow = allowed })
  end
  return common.json(404, { ok = false, error = "unknown control endpoint " .. req.path })
end

return M
