--- bearer.error: one kind of object for every failure.
--
-- An error is a table whose metatable is the core's `bearer.Error`, so it
-- prints as one line, can be raised with error() and caught with pcall.
-- Fields: kind, code, status, message, request_id, retryable, retry_after,
-- attempts, method, path (and, where the API sent them, details, missing).
local core = require "bearer.core"
local json = require "bearer.json"

local M = {}

--- Every kind an error can have; anything else is a bug in bearer.
M.kinds = {
  auth = true, permission = true, not_found = true, gone = true,
  validation = true, conflict = true, rate_limit = true, payment = true,
  server = true, timeout = true, connection = true, tls = true,
  decode = true, too_large = true, signature = true, task = true,
  config = true,
}

local STATUS_KIND = {
  [400] = "validation", [401] = "auth", [402] = "payment", [403] = "permission",
  [404] = "not_found", [408] = "timeout", [409] = "conflict", [410] = "gone",
  [413] = "too_large", [422] = "validation", [429] = "rate_limit",
  [504] = "timeout",
}

--- The kind an HTTP status maps to (5xx other than 504 are `server`,
-- other 4xx are `validation`: the request itself was refused).
function M.kind_for_status(status)
  return STATUS_KIND[status] or (status >= 500 and "server") or "validation"
end

--- Makes `fields` an error object; `kind` is required.
function M.new(fields)
  if type(fields) ~= "table" then
    error("bad argument #1 to 'new' (table expected, got " .. type(fields) .. ")", 2)
  end
  if not M.kinds[fields.kind] then
    error("bad argument #1 to 'new' (unknown error kind '" .. tostring(fields.kind) .. "')", 2)
  end
  fields.message = fields.message or fields.kind
  if fields.retryable == nil then fields.retryable = false end
  return core.error_new(fields)
end

M.is = core.error_is

local function first_line(text, limit)
  local line = text:match("^%s*([^\r\n]*)") or ""
  if #line > limit then line = line:sub(1, limit) .. "..." end
  return line
end

-- FastAPI's 422 body: {"detail": [{"loc": [...], "msg": "...", "type": "..."}]}
local function fastapi_message(detail)
  local parts = {}
  for _, item in ipairs(detail) do
    if type(item) == "table" then
      local loc = {}
      if type(item.loc) == "table" then
        for _, p in ipairs(item.loc) do loc[#loc + 1] = tostring(p) end
      end
      local where = #loc > 0 and (table.concat(loc, ".") .. ": ") or ""
      parts[#parts + 1] = where .. tostring(item.msg or item.type or "invalid")
    end
  end
  return table.concat(parts, "; ")
end

local function str(v)
  return type(v) == "string" and v ~= "" and v or nil
end

-- Reads code and message from the error bodies both APIs send:
--   Overten   {"success": false, "error": "invalid_api_key", "message": "..."}
--   Optiverse (undocumented) {"error": {"code": "AUTH002", "message": "..."}},
--             or {"code": "AUTH002", "message": "..."}
--   FastAPI   {"detail": [...]} or {"detail": "..."}
-- Returns code, message, extra fields.
local function parse_body(doc)
  local code, message
  local extra = {}
  if type(doc.error) == "table" then
    code = str(doc.error.code) or str(doc.error.type)
    message = str(doc.error.message) or str(doc.error.msg)
  else
    code = str(doc.error)
  end
  code = code or str(doc.code) or str(doc.error_code)
  message = message or str(doc.message) or str(doc.error_description)
  if type(doc.detail) == "table" then
    message = message or fastapi_message(doc.detail)
    extra.details = doc.detail
  elseif str(doc.detail) then
    message = message or doc.detail
  end
  if type(doc.missing) == "table" then extra.missing = doc.missing end
  if type(doc.error) == "table" and type(doc.error.missing) == "table" then
    extra.missing = doc.error.missing
  end
  return code, message, extra
end

--- Seconds to wait from a Retry-After value (delta seconds or HTTP date),
-- nil when absent or unreadable. `now` is the client's clock.
function M.retry_after_seconds(value, now)
  if type(value) ~= "string" then return nil end
  local n = tonumber(value)
  if n then return n >= 0 and n or nil end
  local t = core.parse_http_date(value)
  if t then return math.max(0, t - now) end
  return nil
end

-- Every string inside v redacted (server-sent structures such as FastAPI's
-- `detail`, whose `input` may echo a header).
local function redact_deep(v, redact)
  if type(v) == "string" then return redact(v) end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[redact_deep(k, redact)] = redact_deep(x, redact) end
  return out
end

--- An error object for a response with status >= 400.
-- `redact` hides the client's credential in anything the server sent.
function M.from_response(res, redact, now)
  local status = res.status
  local headers = res.headers or {}
  local body = res.body or ""
  local code, message, extra
  local doc = json.decode(body)
  if type(doc) == "table" then
    code, message, extra = parse_body(doc)
  else
    extra = {}
    if body:find("%S") then message = first_line(body, 200) end
  end
  local err = {
    kind = M.kind_for_status(status),
    status = status,
    code = code or ("http_" .. status),
    message = redact(message or ("HTTP " .. status)),
    request_id = headers["x-request-id"] or headers["request-id"],
    retry_after = M.retry_after_seconds(headers["retry-after"], now),
    body = redact(body:sub(1, 65536)),
  }
  for k, v in pairs(extra) do err[k] = redact_deep(v, redact) end
  return core.error_new(err)
end

return M
