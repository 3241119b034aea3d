--- bearer.client: the generic bearer-token HTTP client.
--
-- The transfer itself (credential, TLS, size cap, redaction) is one C call,
-- `perform`; this file is the policy around it: URLs and queries, JSON,
-- retries with backoff and Retry-After, error objects and tracing. Waiting
-- happens here, through the `sleep` the client was given, so a host that
-- must not block (nginx) can pass one that yields.
local core = require "bearer.core"
local errors = require "bearer.error"
local ratelimit = require "bearer.ratelimit"
local json = require "bearer.json"

local M = {}
local methods = core.client_methods   -- the userdata's method table

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }
local RETRY_STATUS = { [408] = true, [429] = true, [500] = true, [502] = true,
                       [503] = true, [504] = true }
local TRANSIENT_KIND = { connection = true, timeout = true }

M.RETRY_AFTER_MAX = 60      -- seconds a Retry-After may make us wait
M.BACKOFF_BASE = 0.5
M.BACKOFF_MAX = 8

-- Options read by C (core.client_new) and by this file; anything else is a typo.
local C_OPTIONS = { key = true, auth = true, timeout = true, connect_timeout = true,
                    max_response_bytes = true, user_agent = true, ca_file = true,
                    proxy = true }
local LUA_OPTIONS = { base_url = true, max_retries = true, headers = true,
                      clock = true, sleep = true, log = true, scheme = true,
                      rate_limit = true }

local function bad_option(name, expected, got)
  error(("bad option '%s' to 'client' (%s expected, got %s)"):format(name, expected, got), 3)
end

local function check_type(opts, name, want)
  local v = opts[name]
  if v ~= nil and type(v) ~= want then bad_option(name, want, type(v)) end
  return v
end

local function default_user_agent()
  local lua = _VERSION:gsub(" ", "/")
  if type(jit) == "table" and jit.version then lua = jit.version:gsub(" ", "/") end
  return ("bearer/%s %s libcurl/%s"):format(core._VERSION, lua, core.curl_version)
end

-- The ngx global of lua-nginx-module (OpenResty), with its thread pools.
local function in_nginx()
  return type(ngx) == "table" and type(ngx.get_phase) == "function"
         and type(ngx.run_worker_thread) == "function"
end

local function stderr_log(line)
  io.stderr:write(line, "\n")
end

--- bearer.client{ base_url=, key=, ... } -> client
-- `key` is a bearer.Key or a string made into one (the scheme is detected
-- from its prefix unless `scheme` says). Wrong option types raise.
function M.new(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'client' (table expected, got " .. type(opts) .. ")", 2)
  end
  for name in pairs(opts) do
    if not C_OPTIONS[name] and not LUA_OPTIONS[name] then
      error(("bad option '%s' to 'client' (unknown option)"):format(tostring(name)), 2)
    end
  end
  local base_url = check_type(opts, "base_url", "string")
  if base_url == nil then bad_option("base_url", "string", "nil") end
  local max_retries = opts.max_retries
  if max_retries ~= nil and not (type(max_retries) == "number" and max_retries >= 0
                                 and max_retries % 1 == 0) then
    bad_option("max_retries", "non-negative integer",
               type(max_retries) == "number" and tostring(max_retries) or type(max_retries))
  end
  local headers = check_type(opts, "headers", "table") or {}
  for k, v in pairs(headers) do
    if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number") then
      bad_option("headers", "table of string names to string values", "another table")
    end
  end
  local scheme = check_type(opts, "scheme", "string")
  local log = check_type(opts, "log", "function")
  local c_opts = {}
  for name in pairs(C_OPTIONS) do c_opts[name] = opts[name] end
  if type(c_opts.key) == "string" then
    c_opts.key = core.key_new(c_opts.key, { scheme = scheme })
  end
  c_opts.user_agent = c_opts.user_agent or default_user_agent()

  local client = core.client_new(c_opts)
  local st = core.client_state(client)
  st.base_url = base_url:gsub("/+$", "")
  st.max_retries = max_retries or 2
  -- What most calls send, built once: Accept and the client's headers,
  -- copied here, where they were checked. A call with headers of its own,
  -- a JSON body or an idempotency key gets its own copy of this table.
  local call_headers = { Accept = "application/json" }
  for k, v in pairs(headers) do call_headers[k] = v end
  st.call_headers = call_headers
  local clock = check_type(opts, "clock", "function")
  local sleep = check_type(opts, "sleep", "function")
  st.clock = clock or core.now
  st.sleep = sleep or core.sleep
  local shared_limiter
  if in_nginx() then
    -- Inside nginx: transfers on the thread pool, waits that yield, and a
    -- rate limit all workers share (see bearer.ngx).
    local bngx = require "bearer.ngx"
    st.perform = bngx.transport(c_opts)
    st.refuse = bngx.refusal
    st.sleep = sleep or bngx.sleep
    local key = client:key()
    shared_limiter = bngx.client_limiter(st.base_url .. "|" .. (key and key:fingerprint() or ""))
  end
  -- spacing wants a clock that never jumps; an injected clock serves both
  st.limiter = ratelimit.from_option(opts.rate_limit, clock or core.monotime, st.sleep,
                                     shared_limiter)
  if log then
    st.log = log
  elseif os.getenv("BEARER_LOG") == "debug" then
    st.log = stderr_log
  end
  return client
end

-- {====================================================== URLs

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(ch)
    return ("%%%02X"):format(ch:byte())
  end))
end
M.escape = escape

--- Encodes a query table: keys sorted (stable URLs, readable traces),
-- array values repeat the key, booleans as true/false, nil values skipped.
function M.encode_query(query)
  local names = {}
  for k in pairs(query) do
    if type(k) ~= "string" then
      error("bad query parameter name (string expected, got " .. type(k) .. ")", 3)
    end
    names[#names + 1] = k
  end
  table.sort(names)
  local parts = {}
  for _, k in ipairs(names) do
    local v = query[k]
    local list = type(v) == "table" and v or { v }
    for _, item in ipairs(list) do
      local t = type(item)
      if t ~= "string" and t ~= "number" and t ~= "boolean" then
        error(("bad query parameter '%s' (string, number or boolean expected, got %s)")
              :format(k, t), 3)
      end
      parts[#parts + 1] = escape(k) .. "=" .. escape(item)
    end
  end
  return table.concat(parts, "&")
end

local function build_url(base_url, path, query)
  local url
  if path:byte(1) == 47 then   -- "/": every API module's paths, first
    url = base_url .. path
  elseif path:find("^https?://") then
    url = path
  else
    if path ~= "" then path = "/" .. path end
    url = base_url .. path
  end
  if query and next(query) ~= nil then
    local q = M.encode_query(query)
    if q ~= "" then url = url .. (url:find("?", 1, true) and "&" or "?") .. q end
  end
  return url
end

-- }======================================================

-- {====================================================== tracing

local function fold(text)
  return (text:gsub("[\r\n]+$", ""):gsub("\r?\n", " | "))
end

-- A URL's query hidden: what a signed URL (another host's credential) or
-- a token in a query would show.
local function hide_query(s)
  return (s:gsub("%?[^%s|]*", "?[REDACTED]"))
end
M.hide_query = hide_query

-- One line per request and one per response. Header text comes from C,
-- already redacted; the line's own prefix (the URL may carry a secret in
-- its query) goes through the same C redaction before it is joined. A call
-- sent without the key goes to someone else's URL (a signed download):
-- its query is a credential of its own and is hidden too.
local function trace(client, st, attempt, method, url, res, err, foreign)
  local log = st.log
  local out = (res or err).trace_request
  local line = client:redact(("bearer: > %s %s (attempt %d)"):format(method, url, attempt))
               .. (out and (" | " .. fold(out)) or "")
  log(foreign and hide_query(line) or line)
  if res then
    line = ("bearer: < %d in %.3fs%s"):format(res.status, res.time or 0,
           res.trace_response and (" | " .. fold(res.trace_response)) or "")
    log(foreign and hide_query(line) or line)
  else
    log(("bearer: < failed: %s (%s)"):format(err.message, err.code))
  end
end

-- }======================================================

-- Replaces JSON nulls in objects by absence, so `if t.next_cursor then`
-- means what it reads; nulls inside arrays stay (cjson.null) to keep length.
-- Every decoded document bearer hands out goes through it.
local function strip_nulls(v)
  if type(v) ~= "table" then return v end
  for k, x in pairs(v) do
    if x == json.null then
      if type(k) ~= "number" then v[k] = nil end
    else
      strip_nulls(x)
    end
  end
  return v
end

M.strip_nulls = strip_nulls

--- JSON text -> document with nulls stripped | nil, why: how every response
-- body and webhook event bearer decodes is read. A document can only hold
-- json.null where the text spells "null"; most API bodies never do, and
-- string.find skips the walk over every table (on a 34 KB page, about as
-- long as the decode itself) at C speed. A "null" inside a string only
-- costs the walk, never correctness.
function M.decode_json(text)
  local doc, why = json.decode(text)
  if doc == nil then return nil, why end
  if type(doc) == "table" and text:find("null", 1, true) then strip_nulls(doc) end
  return doc
end

local function is_json(res)
  local ct = res.headers["content-type"]
  return ct and (ct:find("json", 1, true) ~= nil)
end

-- Errors name the path without its query: a query may hold a token.
-- Computed when an error is made, not on every call.
local function error_path(path)
  return (path:gsub("%?.*$", ""))
end

local function backoff(retry)
  local d = math.min(M.BACKOFF_BASE * 2 ^ (retry - 1), M.BACKOFF_MAX)
  return d * (1 + 0.25 * math.random())
end

-- Whether this failed attempt may be repeated under the policy.
local function may_retry(res, err, idempotent, statuses)
  if res then return (statuses or RETRY_STATUS)[res.status] == true and idempotent end
  if not TRANSIENT_KIND[err.kind] then return false end
  return not err.sent or idempotent
end

-- The transfer options of a call that sets none of its own, one table per
-- (trace, fresh_connect), kept while the client's tracing stays as it
-- was: C reads them during the call and keeps no reference.
local function shared_perform_opts(st, fresh)
  local traced = st.log ~= nil
  local cache = st.perform_opts
  if not cache or cache.traced ~= traced then
    cache = { traced = traced, [true] = { trace = traced, fresh_connect = true },
              [false] = { trace = traced, fresh_connect = false } }
    st.perform_opts = cache
  end
  return cache[fresh]
end

local NO_OPTIONS = {}   -- read only: a call without options

local REQUEST_OPTIONS = { query = true, json = true, body = true, headers = true,
                          timeout = true, idempotency_key = true, form = true,
                          sink = true, credentials = true, max_bytes = true,
                          max_retries = true, retry_statuses = true }

--- client:request(method, path, opts) -> response | nil, err
-- opts: query, json, body, headers, timeout, idempotency_key, max_retries
-- (this call's, instead of the client's), retry_statuses (this call's list
-- of retried statuses, instead of 408 429 500 502 503 504); and for the
-- API modules: form (multipart parts {name=, value=|file=, filename=,
-- type=}), sink (a path that must not exist: a 2xx body streams there;
-- it is removed before each retry), credentials (false: send no key),
-- max_bytes (this call's response cap).
-- Responses with status < 400 are returned (a 3xx is data, not an error);
-- the response is {status=, headers=, body=, json=, time=, bytes=}.
function methods:request(method, path, opts)
  if type(method) ~= "string" then
    error("bad argument #1 to 'request' (string expected, got " .. type(method) .. ")", 2)
  end
  if type(path) ~= "string" then
    error("bad argument #2 to 'request' (string expected, got " .. type(path) .. ")", 2)
  end
  opts = opts or NO_OPTIONS
  if type(opts) ~= "table" then
    error("bad argument #3 to 'request' (table expected, got " .. type(opts) .. ")", 2)
  end
  for name in pairs(opts) do
    if not REQUEST_OPTIONS[name] then
      error(("bad option '%s' to 'request' (unknown option)"):format(tostring(name)), 2)
    end
  end
  method = method:upper()
  local st = core.client_state(self)
  local url = build_url(st.base_url, path, opts.query)
  if st.refuse then   -- inside nginx, where this phase cannot wait
    local refused = st.refuse()
    if refused then
      refused.method, refused.path, refused.attempts = method, error_path(path), 0
      return nil, refused
    end
  end

  local headers = st.call_headers
  local idem_key = opts.idempotency_key
  if opts.headers or opts.json ~= nil or idem_key ~= nil then
    local own = {}
    for k, v in pairs(headers) do own[k] = v end
    if opts.headers then
      for k, v in pairs(opts.headers) do own[k] = v end
    end
    headers = own
  end
  local body = opts.body
  if opts.json ~= nil then
    local encoded, why = json.encode(opts.json)
    if not encoded then
      error("bad option 'json' to 'request' (" .. tostring(why) .. ")", 2)
    end
    body = encoded
    headers["Content-Type"] = headers["Content-Type"] or "application/json"
  elseif body ~= nil and type(body) ~= "string" then
    error("bad option 'body' to 'request' (string expected, got " .. type(body) .. ")", 2)
  end
  if idem_key ~= nil then headers["Idempotency-Key"] = tostring(idem_key) end
  local idempotent = IDEMPOTENT[method] == true or idem_key ~= nil
  local statuses
  if opts.retry_statuses ~= nil then
    if type(opts.retry_statuses) ~= "table" then
      error("bad option 'retry_statuses' to 'request' (array of statuses expected)", 2)
    end
    statuses = {}
    for _, s in ipairs(opts.retry_statuses) do statuses[s] = true end
  end
  local max_retries = opts.max_retries
  if max_retries == nil then
    max_retries = st.max_retries
  elseif not (type(max_retries) == "number" and max_retries >= 0 and max_retries % 1 == 0) then
    error("bad option 'max_retries' to 'request' (non-negative integer expected)", 2)
  end
  -- libcurl resends a request by itself when a reused connection dies
  -- before any reply; a call that must not run twice gets a connection of
  -- its own, so that can never happen to it.
  local perform_opts
  if opts.timeout == nil and opts.form == nil and opts.sink == nil
     and opts.credentials == nil and opts.max_bytes == nil then
    perform_opts = shared_perform_opts(st, not idempotent)
  else
    perform_opts = { timeout = opts.timeout, trace = st.log ~= nil, form = opts.form,
                     sink = opts.sink, credentials = opts.credentials,
                     max_bytes = opts.max_bytes, fresh_connect = not idempotent }
  end

  local attempt = 0
  while true do
    attempt = attempt + 1
    if st.limiter then st.limiter:acquire() end
    if opts.sink and attempt > 1 then os.remove(opts.sink) end
    local res, err = (st.perform or self.perform)(self, method, url, headers, body, perform_opts)
    if st.log then trace(self, st, attempt, method, url, res, err, opts.credentials == false) end
    if res and res.status < 400 then
      res.trace_request, res.trace_response = nil, nil
      if res.body ~= "" and is_json(res) then
        local doc, why = M.decode_json(res.body)
        if doc == nil then
          return nil, errors.new{ kind = "decode", code = "invalid_json",
            status = res.status, message = "response is not valid JSON: " .. tostring(why),
            method = method, path = error_path(path), attempts = attempt,
            request_id = res.headers["x-request-id"] or res.headers["request-id"] }
        end
        res.json = doc
      end
      return res
    end
    if res then
      err = errors.from_response(res, function(s) return self:redact(s) end, st.clock())
    end
    err.trace_request, err.trace_response = nil, nil
    err.retryable = may_retry(res, err, idempotent, statuses)
    err.method, err.path, err.attempts = method, error_path(path), attempt
    if not err.retryable or attempt > max_retries then return nil, err end
    if err.retry_after and err.retry_after > M.RETRY_AFTER_MAX then return nil, err end
    st.sleep(err.retry_after or backoff(attempt))
  end
end

for _, verb in ipairs{ "get", "post", "put", "patch", "delete", "head" } do
  local upper = verb:upper()
  methods[verb] = function(self, path, opts) return self:request(upper, path, opts) end
end

return M
