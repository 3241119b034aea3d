--- Writes the LuaCATS stubs of the declared endpoints (`make types`):
-- lua/bearer/types/overten.lua and lua/bearer/types/optiverse.lua. The
-- methods bearer.endpoint builds at load time have no source line to
-- annotate, so their annotations are made from the same declarations
-- (lua/bearer/*/endpoints.lua). spec/annotations_spec.lua checks the
-- committed stubs are what this writes.
--
--   lua5.4 tools/endpoint-types.lua           -- writes both stubs
--   require("endpoint-types").render(api)    -- the text, for the spec
local check = require "bearer.check"

local M = {}

-- The Lua types a field spec takes, in LuaCATS.
local SPEC_TYPE = {
  string = "string", text = "string", url = "string", uuid = "string", time = "string",
  integer = "integer", number = "number", boolean = "boolean", table = "table",
  list = "any[]", ["function"] = "function",
  scalar = "string|number|boolean|(string|number|boolean)[]",
}

local function spec_type(spec)
  if spec[1] == "enum" then
    local values = {}
    for v in pairs(spec.values) do values[#values + 1] = ("%q"):format(v) end
    table.sort(values)
    return table.concat(values, "|")
  end
  return SPEC_TYPE[spec[1]] or check.lua_type(spec)
end

local function pascal(name)
  return (name:gsub("^%l", string.upper):gsub("_(%w)", string.upper))
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- The classes and methods of each API: which declarations become methods
-- of which class (the same lists the API modules install).
local APIS = {
  overten = function()
    local e = require "bearer.overten.endpoints"
    local client = {}
    for _, d in ipairs(e.client) do client[#client + 1] = d end
    client[#client + 1] = e.runs_page
    return {
      source = "lua/bearer/overten/endpoints.lua",
      { class = "bearer.overten.Client", var = "Client", decls = client },
      { class = "bearer.overten.Admin", var = "Admin", decls = e.admin },
    }
  end,
  optiverse = function()
    local e = require "bearer.optiverse.endpoints"
    return {
      source = "lua/bearer/optiverse/endpoints.lua",
      { class = "bearer.optiverse.Client", var = "Client", decls = {
        e.records_page, e.records, -- the endpoint is found at call time (path_from)
        e.summaries("summaries_page", nil, print), e.summaries("summaries", "offset", print) } },
    }
  end,
}
M.APIS = APIS

-- The options class of one declaration, or nil when it takes none.
local function options_class(out, api, d)
  if d.opts == "none" then return nil end
  local name = ("bearer.%s.%sOptions"):format(api, pascal(d.name))
  local fields = {}
  for k, v in pairs(d.fields or {}) do fields[k] = v end
  for k, v in pairs(d.call or {}) do fields[k] = v end
  if d.idempotency == "optional" then fields.idempotency_key = { "string" } end
  if d.into == "form" then fields.on_progress = { "function" } end
  out[#out + 1] = ("--- Options of `%s` (%s %s)."):format(d.name, d.method, d.path)
  out[#out + 1] = "---@class " .. name
  for _, k in ipairs(sorted_keys(fields)) do
    local spec = fields[k]
    local t = k == "on_progress" and "fun(done: integer, total: integer|nil)" or spec_type(spec)
    local opt = spec.required and "" or "|nil"
    if t:find("|", 1, true) and opt ~= "" then t = "(" .. t .. ")" end
    out[#out + 1] = ("---@field %s %s%s"):format(k, t, opt)
  end
  if not d.strict then
    out[#out + 1] = "---@field [string] " .. (d.others and spec_type(d.others) or "any")
  end
  out[#out + 1] = ""
  return name
end

local function method(out, var, d, name, opts)
  local params, lines = {}, {}
  lines[#lines + 1] = ("--- %s %s%s"):format(d.method, d.path,
    d.paged and " (every page, lazily: a bearer.Pager)" or "")
  if not d.path_from then
    for p in d.path:gmatch("{([%w_]+)}") do
      params[#params + 1] = p
      lines[#lines + 1] = ("---@param %s string"):format(p)
    end
  end
  for _, a in ipairs(d.args or {}) do
    params[#params + 1] = a[1]
    lines[#lines + 1] = ("---@param %s %s"):format(a[1], spec_type(a[2]))
  end
  if opts then
    params[#params + 1] = "opts"
    local t = opts
    if d.shorthand then t = t .. "|string" end
    if d.opts ~= "required" then t = t .. "|nil" end
    lines[#lines + 1] = "---@param opts " .. t
  end
  if d.paged then
    lines[#lines + 1] = "---@return bearer.Pager"
  else
    lines[#lines + 1] = "---@return table|nil result the decoded JSON (true for a 204)"
    lines[#lines + 1] = "---@return bearer.Error|nil err"
  end
  for _, l in ipairs(lines) do out[#out + 1] = l end
  out[#out + 1] = ("function %s:%s(%s) end"):format(var, name, table.concat(params, ", "))
  out[#out + 1] = ""
end

--- The stub text of one API ("overten" or "optiverse").
---@param api string
---@return string
function M.render(api)
  local spec = APIS[api]()
  local out = {
    "---@meta",
    ("--- bearer.types.%s: the methods of the declared endpoints, for editors"):format(api),
    "-- (lua-language-server) and the LDoc reference. Generated by",
    ("-- tools/endpoint-types.lua from %s (`make types`): do not edit."):format(spec.source),
    "",
    "-- luacheck: no unused (stubs: the arguments are for the reader)",
    "",
  }
  for _, class in ipairs(spec) do
    out[#out + 1] = "---@class " .. class.class
    out[#out + 1] = ("local %s = {}"):format(class.var)
    out[#out + 1] = ""
    for _, d in ipairs(class.decls) do
      local opts = options_class(out, api, d)
      method(out, class.var, d, d.name, opts)
      for _, alias in ipairs(d.aliases or {}) do method(out, class.var, d, alias, opts) end
    end
  end
  return table.concat(out, "\n", 1, #out - 1) .. "\n"
end

--- Where the stub of `api` lives, from the repository's root.
---@param api string
---@return string
function M.path(api) return ("lua/bearer/types/%s.lua"):format(api) end

if not pcall(debug.getlocal, 4, 1) then   -- run as a script, not required
  for _, api in ipairs{ "overten", "optiverse" } do
    local f = assert(io.open(M.path(api), "w"))
    f:write(M.render(api))
    f:close()
    print("wrote " .. M.path(api))
  end
end

return M
