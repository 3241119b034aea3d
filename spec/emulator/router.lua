-- Entry point: nginx calls handle() for every request (content_by_lua).
--
-- All state (request log, faults, config, seeded data) lives in module-level
-- tables, i.e. per nginx worker process. That is why the emulator runs with
-- worker_processes 1: with more workers each one would have its own state.
local common = require "common"
local control = require "control"
local faults = require "faults"
local overten = require "overten"
local optiverse = require "optiverse"

local M = {}

local seq = 0 -- X-Request-Id counter; never reset, so ids only increase

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  -- Bodies larger than client_body_buffer_size were spooled to a file.
  local path = ngx.req.get_body_file()
  if not path then return "" end
  local f = assert(io.open(path, "rb"))
  body = f:read("*a")
  f:close()
  return body
end

local function read_request()
  ngx.update_time()
  return {
    request_id = "req_" .. seq,
    method = ngx.req.get_method(),
    uri = ngx.var.request_uri,  -- as sent, query included
    path = ngx.var.uri,         -- decoded and normalised by nginx
    query = ngx.var.args or "", -- raw
    args = ngx.req.get_uri_args(0),
    headers = ngx.req.get_headers(0), -- lower-case names; repeats become lists
    body = read_body(),
    connection = tonumber(ngx.var.connection),
    connection_requests = tonumber(ngx.var.connection_requests),
    time = ngx.now(),
  }
end

local function echo(req)
  return common.json(200, { method = req.method, uri = req.uri, path = req.path,
                            query = req.query, args = req.args, headers = req.headers,
                            body = req.body, connection = req.connection })
end

local function is_control(path)
  return path:sub(1, 11) == "/_emulator/" and path ~= "/_emulator/echo"
end

-- The normal answer to a non-control request, by path prefix.
local function answer(req)
  local path = req.path
  if path == "/_emulator/echo" or path == "/echo" or path:sub(1, 6) == "/echo/" then
    return echo(req)
  elseif path:sub(1, 8) == "/api/v1/" then
    return overten.handle(req)
  elseif path:sub(1, 14) == "/external-api/" then
    return optiverse.handle(req, control.config)
  elseif path:sub(1, 11) == "/files-cdn/" then
    return overten.storage(req)
  end
  return common.error("overten", 404, "not_found", "No route for " .. req.method .. " " .. path .. ".")
end

function M.handle()
  seq = seq + 1
  ngx.header["X-Request-Id"] = "req_" .. seq
  local req = read_request()
  if is_control(req.path) then return common.send(control.handle(req)) end
  local fault = faults.take(req.method, req.path)
  control.record(req, fault)
  if fault then return faults.apply(fault, req, answer) end
  common.send(answer(req))
end

return M
