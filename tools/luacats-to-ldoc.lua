--- Turns the LuaCATS annotations of lua/bearer/ into LDoc tags, for
-- `make docs`. The comments are written once, for lua-language-server
-- (`---@param name type`, `---@class`, `---@field`, `---@alias`); LDoc
-- 1.4 reads `---@param` only as prose and refuses `---@class`, so the
-- reference is built from a copy where each annotation is the LDoc tag
-- that says the same (`@tparam`, `@treturn`, `@type`, `@table`, `@field`).
--
--   lua5.4 tools/luacats-to-ldoc.lua SRC_DIR OUT_DIR
local src, out = arg[1], arg[2]
assert(src and out, "usage: luacats-to-ldoc.lua SRC_DIR OUT_DIR")

-- A LuaCATS type at the start of `s` (it may hold spaces inside brackets,
-- and `fun(...): ret`): the type and the rest of the line.
local function split_type(s)
  local depth, i = 0, 1
  while i <= #s do
    local c = s:sub(i, i)
    if c == "(" or c == "{" or c == "<" or c == "[" then depth = depth + 1
    elseif c == ")" or c == "}" or c == ">" or c == "]" then depth = depth - 1
    elseif c == " " and depth == 0 and not s:sub(1, i - 1):find("[:,|]$") then break end
    i = i + 1
  end
  return s:sub(1, i - 1), (s:sub(i + 1):gsub("^%s+", ""))
end

-- The type as LDoc shows it: simple types as they are, the rest named
-- by their kind, with the LuaCATS text kept in the description.
local function ldoc_type(t)
  local optional = false
  if t:find("|nil$") then optional, t = true, t:gsub("|nil$", "") end
  if t:find("%?$") then optional, t = true, t:sub(1, -2) end
  if t:find("^[%w_.|%[%]\"]+$") then return t, "", optional end
  local kind = t:find("^fun%(") and "function" or t:find("^{") and "table" or "any"
  return kind, " (`" .. t .. "`)", optional
end

local function convert(text, module)
  local lines = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  local result, in_block, module_done, alias = {}, false, false, nil
  local function emit(l)
    if not in_block and not l:find("^%-%-%-") then
      result[#result + 1] = "---"          -- a block must open as a doc comment
    end
    result[#result + 1] = l
    in_block = true
  end
  for _, l in ipairs(lines) do
    local tag, rest = l:match("^%-%-%-@(%w+)%s*(.*)$")
    if alias and not l:find("^%-%-%-|") then
      emit("-- @table " .. alias.name)
      result[#result + 1] = ""
      alias, in_block = nil, false
    end
    if tag == "param" then
      local name, r = rest:match("^(%S+)%s*(.*)$")
      local t, desc = split_type(r)
      local lt, full, opt = ldoc_type(t)
      if name:find("%?$") then opt, name = true, name:sub(1, -2) end
      emit(("-- @tparam%s %s %s %s%s"):format(opt and "[opt]" or "", lt, name, desc, full))
    elseif tag == "return" then
      local t, desc = split_type(rest)
      local lt, full, opt = ldoc_type(t)
      emit(("-- @treturn %s %s%s%s"):format(lt, desc, full, opt and " (or nil)" or ""))
    elseif tag == "field" then
      local name, r = rest:match("^(%S+)%s*(.*)$")
      if not name:find("^%[") or name:find("^%[%d+%]$") then
        local t, desc = split_type(r)
        local lt, full, opt = ldoc_type(t)
        emit(("-- @field %s %s%s%s %s"):format(name:gsub("[%[%]]", ""), lt,
                                               opt and " (optional)" or "", full, desc))
      end
    elseif tag == "class" then
      local name = rest:match("^([%w_.]+)")
      -- Every class is an LDoc table (its fields); its methods stay with the
      -- module's functions as `Class:name`: an LDoc @type section would take
      -- in every function after it, the module's own too.
      emit("-- @table " .. name)
    elseif tag == "alias" then
      alias = { name = rest:match("^([%w_.]+)") }
      local inline = rest:match("^[%w_.]+%s+(.+)$")
      emit("--- " .. (inline and ("`" .. inline .. "`") or "One of:"))
    elseif l:find("^%-%-%-|") then
      emit("-- `" .. l:gsub("^%-%-%-|%s*", "") .. "`")
    elseif tag then
      -- @type, @overload, @generic, @meta: editor-only
      if tag == "type" then emit("-- (`" .. rest .. "`)") end
    else
      if l:find("^%-%-") then
        result[#result + 1] = l
        in_block = true
        if not module_done and l:find("^%-%-%-") then module_done = "open" end
      else
        -- the file's first doc block is the module's: it ends here
        if module_done == "open" then
          result[#result + 1] = "-- @module " .. module
          module_done = true
        end
        result[#result + 1] = l
        in_block = false
      end
    end
  end
  return table.concat(result, "\n")
end

local p = assert(io.popen("cd '" .. src .. "' && find . -name '*.lua' | sort"))
for rel in p:lines() do
  rel = rel:gsub("^%./", "")
  local module = ("bearer/" .. rel):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
  local f = assert(io.open(src .. "/" .. rel, "rb"))
  local text = f:read("*a")
  f:close()
  local target = out .. "/" .. rel
  os.execute("mkdir -p '" .. target:match("^(.*)/") .. "'")
  f = assert(io.open(target, "wb"))
  f:write(convert(text, module))
  f:close()
end
p:close()
