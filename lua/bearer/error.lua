--- bearer.error: one kind of object for every failure.
--
-- An error is a table whose metatable is the core's `bearer.Error`, so it
-- prints as one line, can be raised with error() and caught with pcall.
-- Fields: kind, code, status, message, request_id, retryable, retry_after,
-- attempts, method, path (and, where the API sent them, details, missing).
-- This file knows no API: each API module brings the parser of its own
-- error bodies (from_response's `parse`).

---@alias bearer.ErrorKind
---| "auth"
---| "permission"
---| "not_found"
---| "gone"
---| "validation"
---| "conflict"
---| "rate_limit"
---| "payment"
---| "server"
---| "timeout"
---| "connection"
---| "tls"
---| "decode"
---| "too_large"
---| "signature"
---| "task"
---| "config"

--- Every failure: `tostring(err)` is one line; usable with error() and pcall.
---@class bearer.Error
---@field kind bearer.ErrorKind what to branch on
---@field code string the API's code, `http_<status>`, or a transport name (`timeout`, `connect_failed`, ...)
---@field status integer|nil the HTTP status, when there was a response
---@field message string readable text (redacted)
---@field request_id string|nil from X-Request-Id or Request-Id
---@field retryable boolean true when trying again later is safe
---@field retry_after number|nil seconds, from Retry-After
---@field attempts integer|nil attempts made
---@field method string|nil
---@field path string|nil the path, without its query
---@field sent boolean|nil transport failures: whether any of the request left
---@field details any FastAPI's validation list (redacted)
---@field missing any a preflight's missing assets (redacted)
---@field body string|nil the error body (redacted, 64 KiB at most)
---@field argument string|nil `invalid_argument`: the argument's name

--- What an API module's error parser reads out of a body; every field optional.
---@class bearer.ErrorFields
---@field code string|nil
---@field message string|nil
---@field kind bearer.ErrorKind|nil
---@field details any
---@field missing any

local core = require "bearer.core"
local json = require "bearer.json"

---@class bearer.error
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

-- A server's text through `redact`, when there is any.
local function redact_opt(s, redact)
  if s == nil then return nil end
  return redact(tostring(s))
end

local function is_status(v)
  return type(v) == "number" and v % 1 == 0 and v >= 100 and v <= 999
end

--- The kind an HTTP status maps to (5xx other than 504 are `server`,
-- other 4xx are `validation`: the request itself was refused).
---@param status integer an HTTP status
---@return bearer.ErrorKind
function M.kind_for_status(status)
  if not is_status(status) then
    error("bad argument #1 to 'kind_for_status' (HTTP status expected, got "
          .. (type(status) == "number" and tostring(status) or type(status)) .. ")", 2)
  end
  return STATUS_KIND[status] or (status >= 500 and "server") or "validation"
end

--- Makes `fields` an error object; `kind` is required.
---@param fields table the error's fields; `kind` is required
---@return bearer.Error
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

--- Whether x is an error object.
---@type fun(x: any): boolean
M.is = core.error_is

local function first_line(text, limit)
  local line = text:match("^%s*([^\r\n]*)") or ""
  if #line > limit then line = line:sub(1, limit) .. "..." end
  return line
end

--- A non-empty string, else nil: for reading optional fields of a body.
---@param v any
---@return string|nil
function M.text(v)
  return type(v) == "string" and v ~= "" and v or nil
end
local text = M.text

-- The conventions most JSON APIs share: {"error": "<code>", "message":
-- "..."} or {"code": "...", "message": "..."}. An API module whose bodies
-- say more passes its own parser (it lives with the module).
local function generic_body(doc)
  if type(doc) ~= "table" then return {} end
  return { code = text(doc.error) or text(doc.code) or text(doc.error_code),
           message = text(doc.message) or text(doc.error_description) }
end

--- Seconds to wait from a Retry-After value: delta seconds (digits only,
-- RFC 9110) or an HTTP date; nil when absent or anything else. `now` is
-- the client's wall clock.
---@param value string|nil the header's value
---@param now number wall-clock seconds
---@return number|nil seconds
function M.retry_after_seconds(value, now)
  if type(value) ~= "string" then return nil end
  local digits = value:match("^%s*(%d+)%s*$")
  if digits then return tonumber(digits) end
  if not value:find("%a") then return nil end   -- a date names its month
  local t = core.parse_http_date(value)
  if t then return math.max(0, t - now) end
  return nil
end

-- Every string inside v redacted (server-sent structures such as a
-- validation error list, whose items may echo a header).
local function redact_deep(v, redact)
  if type(v) == "string" then return redact(v) end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[redact_deep(k, redact)] = redact_deep(x, redact) end
  return out
end

local function same(s) return s end

--- An error object for a response with status >= 400.
-- `redact` hides the client's credential in anything the server sent;
-- `now` is the wall clock (Retry-After dates); `parse(doc, body)` reads
-- the API's error body (doc: the decoded JSON table, or nil) into
-- { code=, message=, kind=, details=, missing= }, every field optional;
-- without it, the generic conventions are read.
---@param res { status: integer, headers: table|nil, body: string|nil }
---@param redact (fun(s: string): string)|nil
---@param now number|nil
---@param parse (fun(doc: table|nil, body: string): bearer.ErrorFields)|nil
---@return bearer.Error
function M.from_response(res, redact, now, parse)
  if type(res) ~= "table" then
    error("bad argument #1 to 'from_response' (table expected, got " .. type(res) .. ")", 2)
  end
  if not is_status(res.status) then
    error("bad argument #1 to 'from_response' (response with an HTTP status expected)", 2)
  end
  if res.headers ~= nil and type(res.headers) ~= "table" then
    error("bad argument #1 to 'from_response' (headers must be a table)", 2)
  end
  if res.body ~= nil and type(res.body) ~= "string" then
    error("bad argument #1 to 'from_response' (body must be a string)", 2)
  end
  if redact ~= nil and type(redact) ~= "function" then
    error("bad argument #2 to 'from_response' (function expected, got " .. type(redact) .. ")", 2)
  end
  if now ~= nil and type(now) ~= "number" then
    error("bad argument #3 to 'from_response' (number expected, got " .. type(now) .. ")", 2)
  end
  if parse ~= nil and type(parse) ~= "function" then
    error("bad argument #4 to 'from_response' (function expected, got " .. type(parse) .. ")", 2)
  end
  redact = redact or same
  local status = res.status
  local headers = res.headers or {}
  local body = res.body or ""
  local doc = json.decode(body)
  local f = (parse or generic_body)(type(doc) == "table" and doc or nil, body) or {}
  local message = f.message
  if message == nil and body:find("%S") then message = first_line(body, 200) end
  local err = {
    kind = M.kinds[f.kind] and f.kind or M.kind_for_status(status),
    status = status,
    code = f.code ~= nil and redact(tostring(f.code)) or ("http_" .. status),
    message = redact(message or ("HTTP " .. status)),
    request_id = redact_opt(headers["x-request-id"] or headers["request-id"], redact),
    retry_after = M.retry_after_seconds(headers["retry-after"], now or os.time()),
    body = redact(body:sub(1, 65536)),
    details = f.details ~= nil and redact_deep(f.details, redact) or nil,
    missing = f.missing ~= nil and redact_deep(f.missing, redact) or nil,
  }
  return core.error_new(err)
end

return M
