--- bearer.endpoint: the one builder that turns a declared endpoint into a
-- client method (after lua-resty-aws: the operation is data, one function
-- builds every request, one vocabulary checks every argument).
--
-- A declaration (each API module keeps a table of them):
--   name      the method's name (errors name it)
--   method    "GET", "POST", ...
--   path      "/runs/{run_id}/export": each {param} is a positional
--             argument, in order, escaped as one path segment; or, with
--             `path_from(self, opts) -> { param = value } | nil, err`, a
--             value found at call time (before the first page of a list)
--   args      positional arguments after the path's: { name, spec }
--             (their value goes into the body under `name`)
--   opts      how the options table is taken: "optional" (default),
--             "required", "none"; `shorthand = "text"` also takes a
--             string as { text = s }
--   fields    the options' field specs (bearer.check); `strict` names
--             what an unknown one is ("filter"): it raises; without it
--             unknown fields go through (fields the API adds later work),
--             checked against the spec `others` when given
--   into      where the options go: "body" (JSON, default), "query", "form"
--   call      options read here, never sent: { timeout = spec, ... }
--   defaults  body fields sent unless the caller gives them
--   arrays    body fields that are JSON arrays (an empty table goes as [])
--   idempotency  "optional": `idempotency_key` (a string) is sent as the
--             Idempotency-Key header (and in the body) and makes a POST
--             retryable; without one, a POST is never retried once sent
--   paged     "cursor" or "offset": the method returns a bearer.Pager;
--             `page_defaults` fills the query of every page
--   validate  function(opts) -> nil, err: a rule across fields
--   prepare   function(body): last touches to the body (a field sent twice)
--   secrets   { field = scheme }: secrets in the response become keys
--   after     function(self, doc) -> result: shapes the response
-- The module gives the builder its `call(self, method, path, ropts)`
-- (the transport with its own rules: a token refresh, an envelope check).
local bearer = require "bearer"
local check = require "bearer.check"
local client = require "bearer.client"
local errors = require "bearer.error"
local json = require "bearer.json"
local pager = require "bearer.pager"

local M = {}

local LEVEL = 2   -- a raise from the builder lands at the method's caller
local WITH_BODY = { POST = true, PUT = true, PATCH = true }

-- The path's parameter names, in order.
local function path_params(path)
  local names = {}
  for name in path:gmatch("{([%w_]+)}") do names[#names + 1] = name end
  return names
end

--- The positional arguments of declaration `decl`, in the order its
-- method takes them: the path's parameters (none when `path_from` finds
-- them), then `args`. For tools built on the declarations (bearer.cli).
---@param decl table
---@return string[]
function M.positional(decl)
  local names = decl.path_from and {} or path_params(decl.path)
  for _, arg in ipairs(decl.args or {}) do names[#names + 1] = arg[1] end
  return names
end

-- The declaration's rules, read once when the method is made: a wrong
-- declaration fails at load time, not at a user's call.
local function compile(decl)
  assert(type(decl.name) == "string", "endpoint without a name")
  assert(type(decl.method) == "string" and type(decl.path) == "string", decl.name)
  local d = setmetatable({}, { __index = decl })
  d.params = decl.path_from and {} or path_params(decl.path)
  d.args = decl.args or {}
  d.fields = decl.fields or {}
  d.call_options = decl.call or {}
  if decl.into == "form" and d.call_options.on_progress == nil then
    -- an upload reports the bytes it has sent
    d.call_options.on_progress = { "function" }
  end
  d.into = decl.into or (decl.method == "GET" and "query" or "body")
  d.opts_mode = decl.opts or "optional"
  for name, spec in pairs(d.fields) do check.field(decl.name, name, nil, { spec[1] }) end
  for name, spec in pairs(d.call_options) do check.field(decl.name, name, nil, { spec[1] }) end
  return d
end

--- Replaces each secret field of `doc` (strings from the API) by a
-- bearer.Key, so the raw string never reaches the caller's table. nil and
-- a `decode` error when the API sent something that is not a key.
---@param doc table
---@param secrets table<string, string> field -> scheme
---@return table|nil doc
---@return bearer.Error|nil err
function M.keep_secrets(doc, secrets)
  if type(doc) ~= "table" then return doc end
  local names = {}
  for field in pairs(secrets) do names[#names + 1] = field end
  table.sort(names)
  for _, field in ipairs(names) do
    local scheme, v = secrets[field], doc[field]
    if v ~= nil and not bearer.key.is(v) then
      doc[field] = nil
      local ok, key = pcall(bearer.key, tostring(v), { scheme = scheme })
      if not ok then
        local err = errors.new{ kind = "decode", code = "invalid_secret",
          message = ("the API returned a '%s' that is not a valid %s key"):format(field, scheme) }
        -- the ids of what the API made, so the caller can clean it up
        for k, id in pairs(doc) do
          if type(k) == "string" and k:find("_id$") and type(id) == "string" then err[k] = id end
        end
        return nil, err
      end
      doc[field] = key
    end
  end
  return doc
end

-- The positional arguments and options of one call: path, the body's
-- positional fields, the options table. Raises caller mistakes.
local function take_args(d, ...)
  local argv = { ... }
  local path = d.path
  local i = 0
  for _, name in ipairs(d.params) do
    i = i + 1
    local seg = check.segment(d.name, i, argv[i], LEVEL + 1)
    path = path:gsub("{" .. name .. "}", (seg:gsub("%%", "%%%%")), 1)
  end
  local positional = {}
  for _, arg in ipairs(d.args) do
    i = i + 1
    local v, spec = argv[i], arg[2]
    if type(v) ~= check.lua_type(spec) then
      check.bad_arg(i, d.name, spec.expected or check.lua_type(spec), type(v), LEVEL + 1)
    end
    positional[#positional + 1] = { arg[1], v, spec }
  end
  local opts
  if d.opts_mode ~= "none" then
    i = i + 1
    opts = argv[i]
    if type(opts) == "string" and d.shorthand then opts = { [d.shorthand] = opts } end
    if opts == nil and d.opts_mode == "optional" then opts = {} end
    if type(opts) ~= "table" then
      check.bad_arg(i, d.name, d.shorthand and "table or string" or "table", type(opts), LEVEL + 1)
    end
  end
  return path, positional, opts or {}
end

-- The checked request of one call: method, path, request options, and
-- for paged endpoints the query every page repeats. nil, err for a value
-- the API would refuse.
local function build(d, ...)
  local path, positional, opts = take_args(d, ...)
  for _, p in ipairs(positional) do
    local ok, err = check.field(d.name, p[1], p[2], p[3], LEVEL)
    if not ok then return nil, err end
  end
  local ok, err = check.fields(d.name, opts, d.fields, d.strict, LEVEL, d.others)
  if not ok then return nil, err end
  ok, err = check.fields(d.name, opts, d.call_options, nil, LEVEL)
  if not ok then return nil, err end
  if d.validate then
    ok, err = d.validate(opts)
    if not ok then return nil, err end
  end
  local payload = {}
  for k, v in pairs(d.defaults or {}) do payload[k] = v end
  for k, v in pairs(opts) do
    if d.call_options[k] == nil then payload[k] = v end
  end
  for _, p in ipairs(positional) do payload[p[1]] = p[2] end
  if d.prepare then d.prepare(payload) end
  for _, name in ipairs(d.arrays or {}) do
    if type(payload[name]) == "table" then json.array(payload[name]) end
  end
  local ropts = {}
  for name in pairs(d.call_options) do ropts[name] = opts[name] end
  if d.idempotency == "optional" then
    local key = opts.idempotency_key
    if key ~= nil and type(key) ~= "string" then
      check.bad_option("idempotency_key", d.name, "string", type(key), LEVEL)
    end
    ropts.idempotency_key = key
  end
  if d.into == "query" then
    ropts.query = payload
  elseif d.into == "form" then
    ropts.form = M.form(d, payload)
  elseif next(payload) ~= nil or WITH_BODY[d.method] then
    ropts.json = payload
  end
  local req = { method = d.method, path = path, ropts = ropts }
  if d.path_from then
    -- the path's values are found when the request is made
    req.resolve = function(self)
      local vars, why = d.path_from(self, opts)
      if not vars then return nil, why end
      return (d.path:gsub("{([%w_]+)}", function(name)
        return check.segment(d.name, 1, vars[name])
      end))
    end
  end
  return req
end

-- The request's path, found now if it depends on the call.
local function resolve(req, self)
  if req.resolve then
    local path, err = req.resolve(self)
    if not path then return nil, err end
    req.path, req.resolve = path, nil
  end
  return req.path
end

--- Multipart parts for `payload`: `file` (a path) as the file part (with
-- `filename`, `content_type`), every other field a text part; a table
-- travels as a JSON array string (as the API documents for tags).
---@param d table a compiled declaration
---@param payload table
---@return table[] parts
function M.form(d, payload)
  local parts = {}
  if payload.file ~= nil then
    parts[1] = { name = "file", file = payload.file, filename = payload.filename,
                 type = payload.content_type }
  end
  local names = {}
  for name in pairs(payload) do
    if name ~= "file" and name ~= "filename" and name ~= "content_type" then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  for _, name in ipairs(names) do
    local v = payload[name]
    if type(v) == "table" then
      v = json.encode(v)
    elseif type(v) ~= "string" and type(v) ~= "number" then
      check.bad_option(name, d.name, "string", type(v), LEVEL + 1)
    end
    parts[#parts + 1] = { name = name, value = tostring(v) }
  end
  return parts
end

local function finish(d, self, doc, err)
  if doc == nil then return nil, err end
  if d.secrets then
    local kept, kerr = M.keep_secrets(doc, d.secrets)
    if not kept then return nil, kerr end
  end
  if d.after then return d.after(self, doc) end
  return doc
end

-- A pager over the declared listing: the caller's filters on every page,
-- plus the cursor or the offset.
local function list(d, call, self, req)
  local base = req.ropts.query
  for k, v in pairs(d.page_defaults or {}) do
    if base[k] == nil then base[k] = v end
  end
  local function fetch(position, field)
    local path, err = resolve(req, self)
    if not path then return nil, err end
    local q = {}
    for k, v in pairs(base) do q[k] = v end
    q[field] = position
    local ropts = {}
    for k, v in pairs(req.ropts) do ropts[k] = v end
    ropts.query = q
    return call(self, req.method, path, ropts)
  end
  if d.paged == "offset" then
    return pager.offset(function(offset) return fetch(offset, "offset") end,
                        { offset = base.offset, dedupe = d.dedupe })
  end
  local first = base.cursor
  base.cursor = nil
  return pager.cursor(function(cursor) return fetch(cursor, "cursor") end, first)
end

-- One call of a declared endpoint: checked, built, sent, shaped.
local function single(d, call, self, ...)
  local req, err = build(d, ...)
  if not req then return nil, err end
  local path
  path, err = resolve(req, self)
  if not path then return nil, err end
  return finish(d, self, call(self, req.method, path, req.ropts))
end

--- A client method for declaration `decl`, calling `call(self, method,
-- path, ropts) -> doc | nil, err`. Single calls return the decoded body
-- or nil, err; paged ones return a pager and raise a refused value's
-- error object at once (an iterator has no nil, err).
---@param decl table a declaration (above)
---@param call fun(self: table, method: string, path: string, ropts: table): any, bearer.Error|nil
---@return function method
function M.method(decl, call)
  local d = compile(decl)
  if d.paged then
    return function(self, ...)
      local req, err = build(d, ...)
      if not req then error(err, LEVEL) end
      return list(d, call, self, req)
    end
  end
  return function(self, ...) return single(d, call, self, ...) end
end

--- One page of a paged declaration, as nil, err instead of a raise: the
-- `<name>_page` methods.
---@param decl table
---@param call fun(self: table, method: string, path: string, ropts: table): any, bearer.Error|nil
---@return function method
function M.page_method(decl, call)
  local d = compile(decl)
  return function(self, ...) return single(d, call, self, ...) end
end

--- Installs every declaration of `decls` on class `Class` with `call`.
---@param Class table
---@param decls table[]
---@param call fun(self: table, method: string, path: string, ropts: table): any, bearer.Error|nil
function M.install(Class, decls, call)
  for _, decl in ipairs(decls) do
    Class[decl.name] = M.method(decl, call)
    for _, alias in ipairs(decl.aliases or {}) do Class[alias] = Class[decl.name] end
  end
end

--- The response metadata of `doc`, carried over to `result` (a table a
-- method builds from a response).
---@generic T
---@param doc table
---@param result T
---@return T result
function M.carry(doc, result)
  return client.remember(result, client.response_of(doc))
end

return M
