-- Annotation coverage (issue 10): every public function of lua/bearer/
-- carries LuaCATS annotations, so lua-language-server completes and checks
-- users' code and `make docs` documents it. Public: a function defined as
-- a field of a module table or a class (`M.name`, `Class:name`) whose name
-- does not start with `_` (spec/support/annotations.lua has the rule). The
-- methods bearer.endpoint builds from the declared endpoints are annotated
-- in the generated lua/bearer/types/ stubs, which must be up to date.
local annotations = require "support.annotations"
local files = require "support.files"

package.path = "tools/?.lua;" .. package.path
local types = require "endpoint-types"

-- A file's text; a missing file fails the spec.
local function read(path) return assert(files.read(path), path .. " is missing") end

local function lua_files()
  local list = {}
  local p = assert(io.popen("find lua/bearer -name '*.lua' | sort"))
  for path in p:lines() do list[#list + 1] = path end
  p:close()
  return list
end

-- module name -> file, for the modules plain Lua can load (not bearer.ngx*).
local function module_of(path)
  local name = path:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
  return name
end

describe("annotations", function()
  it("the scanner finds missing annotations and accepts full ones", function()
    local problems = annotations.check("x.lua", table.concat({
      "local M = {}",
      "--- Prose only.",
      "function M.bare(a) end",
      "---@param a string",
      "function M.half(a, b) end",
      "--- Good.",
      "---@param a string",
      "---@return string",
      "function M:good(a) return a end",
      "function M._private(a) end",
      "M.made = function(x) end",
      "--- Returns, but says nothing of it.",
      "function M.value()",
      "  return 1",
      "end",
      "--- Closes.",
      "function M:close() end",
      "function M.undocumented() end",
    }, "\n"))
    assert.same({
      "x.lua:3 M.bare: no ---@param a",
      "x.lua:5 M.half: no ---@param b",
      "x.lua:11 M.made: no --- doc comment, no ---@param x",
      "x.lua:13 M.value: no ---@return",
      "x.lua:18 M.undocumented: no --- doc comment",
    }, problems)
  end)

  it("every public function of lua/bearer/ has its annotation", function()
    local problems = {}
    for _, path in ipairs(lua_files()) do
      for _, p in ipairs((annotations.check(path, read(path)))) do problems[#problems + 1] = p end
    end
    assert.same({}, problems)
  end)

  it("every function a loadable module or API class exposes is annotated", function()
    local unannotated = {}
    local function covered(path, var, name, extra)
      local text = read(path)
      local _, annotated = annotations.check(path, text)
      local typed = annotations.typed(text)
      if (annotated[var] or {})[name] or (typed[var] or {})[name] or annotations.fields(text)[name] then
        return true
      end
      if extra then
        local _, stub = annotations.check(extra, read(extra))
        return (stub[var] or {})[name] == true
      end
      return false
    end
    local function walk(t, path, var, extra)
      for name, v in pairs(t) do
        if type(v) == "function" and type(name) == "string" and not name:find("^_")
           and not covered(path, var, name, extra) then
          unannotated[#unannotated + 1] = path .. " " .. var .. "." .. name
        end
      end
    end
    local checked = 0
    for _, path in ipairs(lua_files()) do
      local name = module_of(path)
      if not name:find("^bearer%.ngx") and not name:find("^bearer%.types") then
        local m = require(name)
        if type(m) == "table" then walk(m, path, "M"); checked = checked + 1 end
      end
    end
    assert.is_true(checked >= 20)
    walk(require("bearer.client").Client, "lua/bearer/client.lua", "Client")
    walk(require("bearer.overten").Client, "lua/bearer/overten.lua", "Client", types.path("overten"))
    walk(require("bearer.overten.admin").Admin, "lua/bearer/overten/admin.lua", "Admin",
         types.path("overten"))
    walk(require("bearer.optiverse").Client, "lua/bearer/optiverse.lua", "Client",
         types.path("optiverse"))
    table.sort(unannotated)
    assert.same({}, unannotated)
  end)

  it("the endpoint stubs are what `make types` writes from the declarations", function()
    for _, api in ipairs{ "overten", "optiverse" } do
      assert.are.equal(types.render(api), read(types.path(api)),
                       types.path(api) .. " is stale: run `make types`")
    end
  end)

  it("every stub method is a method of its class, and every declaration has one", function()
    local classes = {
      ["bearer.overten.Client"] = require("bearer.overten").Client,
      ["bearer.overten.Admin"] = require("bearer.overten.admin").Admin,
      ["bearer.optiverse.Client"] = require("bearer.optiverse").Client,
    }
    for api, spec in pairs(types.APIS) do
      local stub = read(types.path(api))
      for _, class in ipairs(spec()) do
        for _, d in ipairs(class.decls) do
          assert.is_function(classes[class.class][d.name], class.class .. ":" .. d.name)
          assert.truthy(stub:find("function " .. class.var .. ":" .. d.name .. "(", 1, true), d.name)
        end
      end
    end
  end)
end)

describe("tools/luacats-to-ldoc.lua (make docs)", function()
  it("turns the annotations into LDoc tags and leaves no ---@ line", function()
    local out = files.tmpdir()
    assert(os.execute("lua5.4 tools/luacats-to-ldoc.lua lua/bearer " .. out .. "/bearer"))
    local client = assert(files.read(out .. "/bearer/client.lua"))
    local stub = assert(files.read(out .. "/bearer/types/overten.lua"))
    files.remove(out)
    assert.falsy(client:find("\n%-%-%-@"), "a LuaCATS tag is left for LDoc")
    assert.truthy(client:find("-- @module bearer.client", 1, true))
    assert.truthy(client:find("-- @tparam[opt] bearer.RequestOptions opts", 1, true))
    assert.truthy(client:find("-- @treturn bearer.Response response (or nil)", 1, true))
    assert.truthy(client:find("-- @table bearer.ClientOptions", 1, true))
    assert.truthy(client:find("-- @field base_url string prefix of every relative path", 1, true))
    assert.truthy(stub:find("-- @tparam bearer.overten.PreflightOptions opts", 1, true))
  end)
end)
