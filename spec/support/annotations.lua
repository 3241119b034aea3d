-- Reads LuaCATS annotations out of Lua source text, for the annotation
-- coverage spec. "Public": a function defined at the top level of a file
-- as a field of a table (`function M.name(`, `function Class:name(`,
-- `M.name = function(`) whose name does not start with `_`. Annotated: the
-- comment block right above it is a doc comment (`---`) with a `---@param`
-- for each parameter (self aside), and a `---@` tag when it takes none
-- but returns something (`return <value>` on its lines). A field documented with `---@field name`
-- (the verb shorthands, a module table's constructor fields) counts too.
local M = {}

local function params_of(list)
  local names = {}
  for p in list:gmatch("[^,%s]+") do
    if p ~= "self" then names[#names + 1] = p end
  end
  return names
end

-- Every public definition of `text`: { var=, name=, line=, params=, block= }.
function M.definitions(text)
  local defs, lines = {}, {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  for i, line in ipairs(lines) do
    local var, name, params = line:match("^function ([%w_]+)[.:]([%w_]+)%(([^)]*)%)")
    if not var then var, name, params = line:match("^([%w_]+)%.([%w_]+) = function%(([^)]*)%)") end
    if var and not name:find("^_") then
      local block, j = {}, i - 1
      while j >= 1 and lines[j]:find("^%-%-") do table.insert(block, 1, lines[j]); j = j - 1 end
      -- the body: up to the first `end` at the top level (or the line itself)
      local returns, k = false, i
      repeat
        if lines[k]:find("return%s+[^%s]") or lines[k]:find("return%(") then returns = true end
        k = k + 1
      until k > #lines or lines[k - 1]:find("^end") or (k - 1 == i and lines[i]:find("end%s*$"))
      defs[#defs + 1] = { var = var, name = name, line = i, params = params_of(params), block = block,
                          returns = returns }
    end
  end
  return defs
end

-- What is missing from one definition's annotation: a list of reasons.
function M.missing(def)
  local why, tags, doc, documented = {}, false, false, {}
  for _, l in ipairs(def.block) do
    if l:find("^%-%-%-@") then tags = true end
    if l:find("^%-%-%-") then doc = true end
    local p = l:match("^%-%-%-@param ([%w_%.]+)")
    if p then documented[p] = true end
  end
  if not doc then why[#why + 1] = "no --- doc comment" end
  if not tags and def.returns and #def.params == 0 then why[#why + 1] = "no ---@return" end
  for _, p in ipairs(def.params) do
    if not documented[p] then why[#why + 1] = "no ---@param " .. p end
  end
  return why
end

-- Fields given another table's function (`M.is = core.key_is`) whose
-- block above says its type (---@type): { M = { is = true } }.
function M.typed(text)
  local typed, prev = {}, {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local var, name = line:match("^([%w_]+)%.([%w_]+) = [%w_.]+$")
    if var then
      for _, l in ipairs(prev) do
        if l:find("^%-%-%-@type ") then
          typed[var] = typed[var] or {}
          typed[var][name] = true
        end
      end
    end
    if line:find("^%-%-") then prev[#prev + 1] = line else prev = {} end
  end
  return typed
end

-- Names documented with ---@field in `text`.
function M.fields(text)
  local names = {}
  for name in text:gmatch("\n%-%-%-@field ([%w_]+)") do names[name] = true end
  return names
end

-- Problems of one file's text: "file:line var.name: reason" strings, and
-- the annotated names by table variable ({ Client = { verify = true } }).
function M.check(path, text)
  local problems, annotated = {}, {}
  for _, def in ipairs(M.definitions(text)) do
    local why = M.missing(def)
    if #why == 0 then
      annotated[def.var] = annotated[def.var] or {}
      annotated[def.var][def.name] = true
    else
      problems[#problems + 1] = ("%s:%d %s.%s: %s"):format(path, def.line, def.var, def.name,
                                                      table.concat(why, ", "))
    end
  end
  return problems, annotated
end

return M
