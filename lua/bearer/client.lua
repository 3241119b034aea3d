--- bearer.client: the generic bearer-token HTTP client, and the one
-- surface the API modules build on.
--
-- The transfer itself (credential, TLS, size cap, redaction) is one C
-- call on a handle this file holds privately; this file is the policy
-- around it: URLs and queries, JSON, retries with backoff and
-- Retry-After, rate limits, error objects, logging and response
-- metadata. Waiting, time and the transport come from the client's host
-- (bearer.host), so nothing here knows nginx or a test clock.
local core = require "bearer.core"
local errors = require "bearer.error"
local host = require "bearer.host"
local json = require "bearer.json"
local keys = require "bearer.key"
local ratelimit = require "bearer.ratelimit"

--- Options of `bearer.client{...}`; unknown names raise.
---@class bearer.ClientOptions
---@field base_url string prefix of every relative path (required)
---@field key bearer.Key|string|nil the credential; a string is made a key (scheme detected, or `scheme`)
---@field scheme string|nil the scheme of a string `key`
---@field auth "bearer"|"x-api-key"|nil the header that carries the key (default "bearer")
---@field timeout number|nil seconds per attempt (default 60)
---@field connect_timeout number|nil seconds (default 5)
---@field max_retries integer|nil retries after the first attempt (default 2)
---@field max_response_bytes integer|nil larger responses are a `too_large` error (default 64 MiB)
---@field user_agent string|nil replaces the whole User-Agent header
---@field ca_file string|nil passed to libcurl
---@field proxy string|nil passed to libcurl (never used for a credential to loopback)
---@field headers table<string, string>|nil sent with every request
---@field clock (fun(): number)|nil the client's time (a test clock)
---@field sleep (fun(seconds: number))|nil how the client waits
---@field host bearer.Host|nil where the client runs (default: chosen once per process)
---@field log (fun(line: string))|nil receives the trace lines
---@field rate_limit { requests: integer, per: number }|bearer.Limiter|nil every attempt waits its turn
---@field error_parser (fun(doc: table|nil, body: string): bearer.ErrorFields)|nil how the API's error bodies read

--- The per-call settings a view (`with_options`) may change.
---@class bearer.ViewOptions
---@field timeout number|nil seconds per attempt
---@field max_retries integer|nil
---@field headers table<string, string>|nil added to the client's
---@field retry_statuses integer[]|nil statuses retried instead of 408, 429, 500, 502, 503, 504

--- A verb shorthand: `c:get(path, opts)` is `c:request("GET", path, opts)`.
---@alias bearer.VerbCall
---| fun(self: bearer.Client, path: string, opts?: bearer.RequestOptions): bearer.Response?, bearer.Error?

--- Options of `client:request` and the verb shorthands.
---@class bearer.RequestOptions: bearer.ViewOptions
---@field query table|nil URL-encoded, keys sorted, arrays repeat the key
---@field json any encoded as the body (sets Content-Type)
---@field body string|nil sent as is
---@field idempotency_key string|nil sent as Idempotency-Key; makes the call retryable
---@field credentials boolean|nil false: send no key (someone else's URL, a signed link)
---@field on_progress (fun(done: integer, total: integer|nil))|nil transfer progress

--- What a successful call returns (status below 400).
---@class bearer.Response
---@field status integer
---@field headers table<string, string> lower-case names
---@field body string
---@field json any the decoded body, when it is JSON
---@field time number seconds over every attempt

--- `bearer.response_of(t)`: how a table an API call returned came.
---@class bearer.ResponseMeta
---@field status integer
---@field headers table<string, string>
---@field request_id string|nil
---@field attempts integer
---@field time number seconds over every attempt

---@class bearer.client
local M = {}

--- The generic client: `request`, the verb shorthands (`get`, `post`, `put`,
-- `patch`, `delete`, `head`: `(path, opts)`), its settings and `close`.
---@class bearer.Client
---@field get bearer.VerbCall
---@field post bearer.VerbCall
---@field put bearer.VerbCall
---@field patch bearer.VerbCall
---@field delete bearer.VerbCall
---@field head bearer.VerbCall
local Client = {}
Client.__index = Client
M.Client = Client

-- client (or view) -> its settings and C handle. Weak: a client nobody
-- holds goes, and its handle's __gc closes the transfer handle.
local private = setmetatable({}, { __mode = "k" })

-- Any table an API call returned -> its response metadata. Weak-keyed, so
-- it costs nothing once the caller drops the result, and holds whatever
-- else runs meanwhile (concurrent calls each key their own table).
local responses = setmetatable({}, { __mode = "k" })

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
                      rate_limit = true, host = true, error_parser = true }
-- What a view (with_options) may change: per-call settings, not the connection.
local VIEW_OPTIONS = { timeout = true, max_retries = true, headers = true,
                       retry_statuses = true }

local LOG_LEVELS = { info = 1, debug = 2 }

local function bad_option(fname, name, expected, got, level)
  error(("bad option '%s' to '%s' (%s expected, got %s)"):format(name, fname, expected, got),
        level + 1)
end

local function check_type(opts, name, want, fname, level)
  local v = opts[name]
  if v ~= nil and type(v) ~= want then bad_option(fname, name, want, type(v), level + 1) end
  return v
end

local function check_count(v)
  return type(v) == "number" and v >= 0 and v % 1 == 0 and v < math.huge
end

local function check_headers(headers, fname, level)
  for k, v in pairs(headers) do
    if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number") then
      bad_option(fname, "headers", "table of string names to string values", "another table",
                 level + 1)
    end
  end
  return headers
end

-- The shared checks of the constructor and with_options: timeout,
-- max_retries, headers, retry_statuses (when present).
local function check_call_options(opts, fname, level)
  local mr = opts.max_retries
  if mr ~= nil and not check_count(mr) then
    bad_option(fname, "max_retries", "non-negative integer",
               type(mr) == "number" and tostring(mr) or type(mr), level + 1)
  end
  local t = opts.timeout
  if t ~= nil and not (type(t) == "number" and t > 0 and t < math.huge) then
    bad_option(fname, "timeout", "positive number", type(t) == "number" and tostring(t) or type(t),
               level + 1)
  end
  local rs = opts.retry_statuses
  if rs ~= nil and type(rs) ~= "table" then
    bad_option(fname, "retry_statuses", "array of statuses", type(rs), level + 1)
  end
  if opts.headers ~= nil then
    check_headers(check_type(opts, "headers", "table", fname, level + 1), fname, level + 1)
  end
end

-- What most calls send, built once per client (and per view with headers
-- of its own): Accept and the client's headers, copied where they were
-- checked. A call with headers of its own, a JSON body or an idempotency
-- key gets its own copy.
local function call_headers(headers)
  local out = { Accept = "application/json" }
  for k, v in pairs(headers) do out[k] = v end
  return out
end

local function default_user_agent()
  local lua = _VERSION:gsub(" ", "/")
  if type(jit) == "table" and jit.version then lua = jit.version:gsub(" ", "/") end
  return ("bearer/%s %s libcurl/%s"):format(core._VERSION, lua, core.curl_version)
end

local function stderr_log(line)
  io.stderr:write(line, "\n")
end

-- The log sink and level. info: one line per call; debug: the lines of
-- every attempt, with the (redacted) headers libcurl sent and received. A
-- `log` function gets the debug lines unless BEARER_LOG says info; else
-- BEARER_LOG=info|debug prints to stderr.
local function log_setup(log)
  local env = os.getenv("BEARER_LOG")
  if log then return log, LOG_LEVELS[env] or LOG_LEVELS.debug end
  if LOG_LEVELS[env] then return stderr_log, LOG_LEVELS[env] end
  return nil, 0
end

-- What shared rate-limit slots are named after: the base URL and the key's
-- fingerprint (never the key), so clients of one API and key share them.
local function limit_name(st)
  local key = st.handle:key()
  return st.base_url .. "|" .. (key and key:fingerprint() or "")
end

--- bearer.client{ base_url=, key=, ... } -> client
-- `key` is a bearer.Key or a string made into one (the scheme is detected
-- from its prefix unless `scheme` says). Wrong option types raise, at the
-- caller `level` levels up (API modules building a client pass theirs).
---@param opts bearer.ClientOptions
---@param level integer|nil levels above the caller, for raises
---@return bearer.Client
function M.new(opts, level)
  local lv = (level or 1) + 1
  if type(opts) ~= "table" then
    error("bad argument #1 to 'client' (table expected, got " .. type(opts) .. ")", lv)
  end
  for name in pairs(opts) do
    if not C_OPTIONS[name] and not LUA_OPTIONS[name] then
      error(("bad option '%s' to 'client' (unknown option)"):format(tostring(name)), lv)
    end
  end
  local base_url = check_type(opts, "base_url", "string", "client", lv)
  if base_url == nil then bad_option("client", "base_url", "string", "nil", lv) end
  check_call_options({ max_retries = opts.max_retries, headers = opts.headers }, "client", lv)
  local scheme = check_type(opts, "scheme", "string", "client", lv)
  local log = check_type(opts, "log", "function", "client", lv)
  local clock = check_type(opts, "clock", "function", "client", lv)
  local sleep = check_type(opts, "sleep", "function", "client", lv)
  local error_parser = check_type(opts, "error_parser", "function", "client", lv)
  local h = opts.host
  if h ~= nil and not (type(h) == "table" and type(h.transport) == "function") then
    bad_option("client", "host", "bearer.host", type(h), lv)
  end
  h = h or host.current()
  if clock or sleep then h = host.test{ clock = clock, sleep = sleep, base = h } end

  local c_opts = {}
  for name in pairs(C_OPTIONS) do c_opts[name] = opts[name] end
  if type(c_opts.key) == "string" then
    c_opts.key = keys.new(c_opts.key, { scheme = scheme })
  end
  c_opts.user_agent = c_opts.user_agent or default_user_agent()
  local handle = core.client_new(c_opts)

  local self = setmetatable({}, Client)
  local st = {
    handle = handle,
    host = h,
    perform = h.transport(c_opts),
    base_url = base_url:gsub("/+$", ""),
    max_retries = opts.max_retries or 2,
    headers = opts.headers or {},
    error_parser = error_parser,
  }
  st.call_headers = call_headers(st.headers)
  st.log, st.level = log_setup(log)
  st.store_timeout = opts.connect_timeout
  -- The slots' name only for a limit: the key's fingerprint is the process's
  -- first SHA-256, which sets up OpenSSL's digests (~0.3 MiB of RSS) that a
  -- client without a limit never needs.
  if opts.rate_limit ~= nil then
    st.limiter = ratelimit.from_option(opts.rate_limit, h, limit_name(st), st.store_timeout)
  end
  private[self] = st
  return self
end

local function state(self, fname)
  local st = private[self]
  if not st then
    error(("bad self to '%s' (bearer.Client expected, got %s)"):format(fname, type(self)), 3)
  end
  return st
end

-- The view behind every with_options (Client:with_options, api_view);
-- `lv` is the caller's level for raises.
local function make_view(self, opts, lv)
  local parent = state(self, "with_options")
  if type(opts) ~= "table" then
    error("bad argument #1 to 'with_options' (table expected, got " .. type(opts) .. ")", lv + 1)
  end
  for name in pairs(opts) do
    if not VIEW_OPTIONS[name] then
      error(("bad option '%s' to 'with_options' (unknown option)"):format(tostring(name)), lv + 1)
    end
  end
  check_call_options(opts, "with_options", lv + 1)
  local st = setmetatable({ view = true }, { __index = parent })
  if opts.headers then
    local merged = {}
    for k, v in pairs(parent.headers) do merged[k] = v end
    for k, v in pairs(opts.headers) do merged[k] = v end
    st.headers = merged
    st.call_headers = call_headers(merged)
  end
  st.timeout = opts.timeout
  if opts.max_retries ~= nil then st.max_retries = opts.max_retries end
  st.retry_statuses = opts.retry_statuses
  local view = setmetatable({}, Client)
  private[view] = st
  return view
end

--- c:with_options{ timeout=, max_retries=, headers=, retry_statuses= } -> view
-- A light view of this client: the same connection, key, host and rate
-- limit, other per-call defaults. `headers` add to the client's. Unknown
-- names raise, as in the constructor. Closing a view closes nothing.
---@param opts bearer.ViewOptions
---@return bearer.Client view
function Client:with_options(opts) return make_view(self, opts, 2) end

local function no_close() end

--- The with_options of an API module's client (a table whose `http` is a
-- bearer.client): the same object seen through a view of its `http`.
-- What the module writes through the view (a refreshed token, a cache)
-- lands on the client itself. Its close does nothing; the client it came
-- from owns the connection.
---@generic T: table
---@param api T an API module's client
---@param opts bearer.ViewOptions
---@return T view
function M.api_view(api, opts)
  local view = setmetatable({}, { __index = api, __newindex = api, __close = no_close })
  rawset(view, "http", make_view(api.http, opts, 3))
  rawset(view, "close", no_close)
  return view
end

--- Frees the connection (also at GC); the key stays open (it may be
-- shared). A view's close does nothing: its client owns the connection.
function Client:close()
  local st = state(self, "close")
  if not st.view then st.handle:close() end
end
Client.__close = Client.close

function Client:__tostring()
  local st = private[self]
  return st and tostring(st.handle) or "bearer.Client"
end

--- The client's key (a bearer.Key), or nil.
---@return bearer.Key|nil
function Client:key() return state(self, "key").handle:key() end

--- Replaces the key used from the next request on (nil: send none).
---@param key bearer.Key|nil
function Client:set_key(key) return state(self, "set_key").handle:set_key(key) end

--- The base URL, without a trailing slash.
---@return string
function Client:base_url() return state(self, "base_url").base_url end

--- Seconds that never jump (the host's; injected in tests): for spacing.
---@return number
function Client:clock() return state(self, "clock").host.clock() end

--- Wall-clock seconds (the host's; injected in tests): for dates.
---@return number
function Client:now() return state(self, "now").host.now() end

--- Waits `seconds` the host's way (blocks, or yields inside nginx).
---@param seconds number
function Client:sleep(seconds) return state(self, "sleep").host.sleep(seconds) end

--- `text` with the client's credential and credential headers hidden.
---@param text string
---@return string
function Client:redact(text) return state(self, "redact").handle:redact(text) end

--- A rate limiter on this client's host: shared as the host shares
-- (every nginx worker), or through the redis:// server `spec.store` (with
-- `spec.on_store_error`), named after `name`, the base URL and the key.
-- Returns the limiter and whether it is shared beyond this process
-- (nil, false when it would not be); its `store` may also claim().
---@param spec { requests: integer, per: number, name: string, store: string|nil, on_store_error: string|nil }
---@return table|nil, boolean
function Client:shared_limiter(spec)
  local st = state(self, "shared_limiter")
  if type(spec) ~= "table" or type(spec.name) ~= "string" then
    error("bad argument #1 to 'shared_limiter' (table with a string 'name' expected)", 2)
  end
  local name = spec.name .. "|" .. limit_name(st)
  local store = st.host.store(name, spec.per, { url = spec.store, timeout = st.store_timeout,
                                                on_store_error = spec.on_store_error })
  if not store then return nil, false end
  return ratelimit.new{ requests = spec.requests, per = spec.per, store = store,
                        sleep = st.host.sleep }, true
end

-- {====================================================== URLs

local function escape_byte(ch) return ("%%%02X"):format(ch:byte()) end

local function escape(s)
  s = tostring(s)
  if not s:find("[^%w%-%._~]") then return s end   -- most names and values
  return (s:gsub("[^%w%-%._~]", escape_byte))
end
--- Percent-encodes everything but RFC 3986's unreserved characters.
---@type fun(s: any): string
M.escape = escape

-- One "name=value" of a query, or a raise naming the parameter.
local function query_part(k, item)
  local t = type(item)
  if t == "number" then
    if item % 1 == 0 and item > -2 ^ 53 and item < 2 ^ 53 then
      item = ("%d"):format(item)         -- 50, never 50.0
    end
  elseif t ~= "string" and t ~= "boolean" then
    error(("bad query parameter '%s' (string, number or boolean expected, got %s)")
          :format(k, t), 4)
  end
  return escape(k) .. "=" .. escape(item)
end

--- Encodes a query table: keys sorted (stable URLs, readable traces),
-- array values repeat the key, booleans as true/false, nil values skipped.
---@param query table<string, string|number|boolean|(string|number|boolean)[]>
---@return string
function M.encode_query(query)
  local names, n = {}, 0
  for k in pairs(query) do
    if type(k) ~= "string" then
      error("bad query parameter name (string expected, got " .. type(k) .. ")", 3)
    end
    n = n + 1
    names[n] = k
  end
  if n == 1 and type(query[names[1]]) ~= "table" then   -- most calls: one scalar
    -- not a tail call: query_part's raise counts this function's level
    return (query_part(names[1], query[names[1]]))
  end
  table.sort(names)
  local parts = {}
  for _, k in ipairs(names) do
    local v = query[k]
    if type(v) == "table" then
      for _, item in ipairs(v) do parts[#parts + 1] = query_part(k, item) end
    else
      parts[#parts + 1] = query_part(k, v)
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

-- {====================================================== logging

local function fold(text)
  return (text:gsub("[\r\n]+$", ""):gsub("\r?\n", " | "))
end

-- A URL's query hidden: what a signed URL (another host's credential) or
-- a token in a query would show.
local function hide_query(s)
  return (s:gsub("%?[^%s|]*", "?[REDACTED]"))
end
--- `s` with every URL query replaced by `?[REDACTED]`.
---@type fun(s: string): string
M.hide_query = hide_query

-- debug: one line per request and one per response. Header text comes
-- from C, already redacted; the line's own prefix (the URL may carry a
-- secret in its query) goes through the same C redaction before it is
-- joined. A call sent without the key goes to someone else's URL (a
-- signed download): its query is a credential of its own and is hidden.
local function trace(st, attempt, method, url, res, err, foreign)
  local log = st.log
  local out = (res or err).trace_request
  local line = st.handle:redact(("bearer: > %s %s (attempt %d)"):format(method, url, attempt))
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

-- info: one line per call, after its last attempt, through the same
-- redaction (a path may hold the key).
local function summary(st, method, path, meta, err)
  local outcome = meta.status and tostring(meta.status) or (err.kind .. "/" .. tostring(err.code))
  st.log(st.handle:redact(("bearer: %s %s %s %.3fs attempts=%d%s"):format(method, path, outcome,
         meta.time, meta.attempts, meta.request_id and (" request_id=" .. meta.request_id) or "")))
end

-- }======================================================

--- The response metadata of a table an API call returned (a decoded
-- body, a page, a response): { status=, headers=, request_id=,
-- attempts=, time= }, or nil for a table no call returned.
---@param t any
---@return bearer.ResponseMeta|nil
function M.response_of(t)
  if type(t) ~= "table" then return nil end
  return responses[t]
end

--- Records `meta` as the response metadata of `t` (API modules: for a
-- table they build from a response, such as a page).
---@param t table
---@param meta bearer.ResponseMeta
function M.remember(t, meta)
  if type(t) == "table" and meta then responses[t] = meta end
  return t
end

-- fn(s) remembered for the strings a call sees again and again (a lookup is
-- cheaper than a search per call). Bounded: emptied at 64 entries, and a
-- long string (a hostile server's header) is computed, never kept.
local function memo(fn)
  local cache, n = {}, 0
  return function(s)
    local v = cache[s]
    if v == nil then
      v = fn(s)
      if #s <= 128 then
        if n >= 64 then cache, n = {}, 0 end
        cache[s], n = v, n + 1
      end
    end
    return v
  end
end

-- Whether a content type is JSON's.
local json_type = memo(function(ct) return ct:find("json", 1, true) ~= nil end)

local function is_json(res)
  local ct = res.headers["content-type"]
  return ct ~= nil and json_type(ct)
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

local function status_set(list)
  if list == nil then return nil end
  local set = {}
  for _, s in ipairs(list) do set[s] = true end
  return set
end

-- The transfer options of a call that sets none of its own, kept per
-- client (and view) while its timeout and tracing stay as they were, one
-- table per fresh_connect: C reads them during the call and keeps none.
local function shared_perform_opts(st, tracing, fresh)
  local cache = st.perform_opts
  if not cache or cache.timeout ~= st.timeout or cache.tracing ~= tracing then
    cache = { timeout = st.timeout, tracing = tracing,
              [true] = { timeout = st.timeout, trace = tracing, fresh_connect = true },
              [false] = { timeout = st.timeout, trace = tracing, fresh_connect = false } }
    rawset(st, "perform_opts", cache)   -- a view's own, not its client's
  end
  return cache[fresh]
end

-- Errors and log lines name the path without its query (a query may hold
-- a token); made when one is, not on every call.
local function error_path(path)
  return (path:gsub("%?.*$", ""))
end

local NO_OPTIONS = {}   -- read only: a call without options

local REQUEST_OPTIONS = { query = true, json = true, body = true, headers = true,
                          timeout = true, idempotency_key = true, form = true,
                          sink = true, credentials = true, max_bytes = true,
                          max_retries = true, retry_statuses = true, on_progress = true }

-- An HTTP method is a token (RFC 9110); anything else would be a request
-- line of our making.
local METHOD = "^[%w!#$%%&'*+%-.^_`|~]+$"
-- A method's upper case, or false when it is not a token.
local method_upper = memo(function(m) return m:find(METHOD) ~= nil and m:upper() end)

--- client:request(method, path, opts) -> response | nil, err
-- opts: query, json, body, headers, timeout, idempotency_key, max_retries
-- (this call's, instead of the client's), retry_statuses (this call's list
-- of retried statuses, instead of 408 429 500 502 503 504); and for the
-- API modules: form (multipart parts {name=, value=|file=, filename=,
-- type=}), sink (a path that must not exist: a 2xx body streams there;
-- it is removed before each retry), credentials (false: send no key),
-- max_bytes (this call's response cap), on_progress (fn(done, total):
-- bytes received, or sent for a form, at most ~10 times a second and once
-- at the end; total nil while unknown).
-- Responses with status < 400 are returned (a 3xx is data, not an error);
-- the response is {status=, headers=, body=, json=, time=, bytes=}.
---@param method string "GET", "POST", ...
---@param path string relative to base_url, or a full http(s) URL
---@param opts bearer.RequestOptions|nil
---@return bearer.Response|nil response
---@return bearer.Error|nil err
function Client:request(method, path, opts)
  local st = state(self, "request")
  if type(method) ~= "string" then
    error("bad argument #1 to 'request' (string expected, got " .. type(method) .. ")", 2)
  end
  local upper = method_upper(method)
  if not upper then
    error("bad argument #1 to 'request' (HTTP method expected, got '"
          .. method:gsub("[^%w]", "?") .. "')", 2)
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
  method = upper
  local url = build_url(st.base_url, path, opts.query)
  local refused = st.host.refuse()
  if refused then   -- inside nginx, where this phase cannot wait
    refused.method, refused.path, refused.attempts = method, error_path(path), 0
    return nil, refused
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
  if opts.retry_statuses ~= nil and type(opts.retry_statuses) ~= "table" then
    error("bad option 'retry_statuses' to 'request' (array of statuses expected)", 2)
  end
  local statuses = status_set(opts.retry_statuses or st.retry_statuses)
  local max_retries = opts.max_retries
  if max_retries == nil then
    max_retries = st.max_retries
  elseif not check_count(max_retries) then
    error("bad option 'max_retries' to 'request' (non-negative integer expected)", 2)
  end
  -- libcurl resends a request by itself when a reused connection dies
  -- before any reply; a call that must not run twice gets a connection of
  -- its own, so that can never happen to it.
  local tracing = st.level >= LOG_LEVELS.debug
  if opts.on_progress ~= nil and type(opts.on_progress) ~= "function" then
    error("bad option 'on_progress' to 'request' (function expected, got "
          .. type(opts.on_progress) .. ")", 2)
  end
  local perform_opts
  if opts.timeout == nil and opts.form == nil and opts.sink == nil and opts.credentials == nil
     and opts.max_bytes == nil and opts.on_progress == nil then
    perform_opts = shared_perform_opts(st, tracing, not idempotent)
  else
    perform_opts = { timeout = opts.timeout or st.timeout, trace = tracing, form = opts.form,
                     sink = opts.sink, credentials = opts.credentials,
                     max_bytes = opts.max_bytes, fresh_connect = not idempotent,
                     on_progress = opts.on_progress }
  end

  local started = st.host.clock()
  local attempt = 0
  while true do
    attempt = attempt + 1
    if st.limiter then
      -- a custom limiter may return nothing; a shared store's failure is nil, err
      local waited, lerr = st.limiter:acquire()
      if waited == nil and lerr ~= nil then return nil, lerr end
    end
    if opts.sink and attempt > 1 then os.remove(opts.sink) end
    local res, err = st.perform(st.handle, method, url, headers, body, perform_opts)
    if tracing then trace(st, attempt, method, url, res, err, opts.credentials == false) end
    local meta
    if res then
      meta = { status = res.status, headers = res.headers, attempts = attempt,
               request_id = res.headers["x-request-id"] or res.headers["request-id"] }
    end
    if res and res.status < 400 then
      res.trace_request, res.trace_response = nil, nil
      meta.time = st.host.clock() - started
      if st.level == LOG_LEVELS.info then summary(st, method, error_path(path), meta) end
      if res.body ~= "" and is_json(res) then
        local doc, why = json.decode(res.body)
        if doc == nil then
          return nil, errors.new{ kind = "decode", code = "invalid_json",
            status = res.status, message = "response is not valid JSON: " .. tostring(why),
            method = method, path = error_path(path), attempts = attempt,
            request_id = meta.request_id }
        end
        res.json = doc
        M.remember(doc, meta)
      end
      return M.remember(res, meta)
    end
    if res then
      err = errors.from_response(res, function(s) return st.handle:redact(s) end, st.host.now(),
                                 st.error_parser)
    end
    err.trace_request, err.trace_response = nil, nil
    err.retryable = may_retry(res, err, idempotent, statuses)
    err.method, err.path, err.attempts = method, error_path(path), attempt
    local final = not err.retryable or attempt > max_retries
                  or (err.retry_after and err.retry_after > M.RETRY_AFTER_MAX)
    if final then
      if st.level == LOG_LEVELS.info then
        summary(st, method, err.path, { status = err.status, attempts = attempt,
                time = st.host.clock() - started, request_id = err.request_id }, err)
      end
      return nil, err
    end
    st.host.sleep(err.retry_after or backoff(attempt))
  end
end

for _, verb in ipairs{ "get", "post", "put", "patch", "delete", "head" } do
  local upper = verb:upper()
  Client[verb] = function(self, path, opts) return self:request(upper, path, opts) end
end

return M
