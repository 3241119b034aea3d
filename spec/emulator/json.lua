-- JSON for the emulator.
--
-- Decoding is lua-cjson. Encoding is our own, because Debian's lua-cjson
-- 2.1.0 cannot emit an empty array (an empty table always becomes "{}") and
-- always escapes "/" (URLs would read "http:\/\/..."). Sorting object keys
-- also makes every response byte-for-byte reproducible across runs.
local cjson = require "cjson"

local M = { null = cjson.null }

local array_mt = {}

-- Marks a table as a JSON array so that it encodes as [] even when empty.
function M.array(t)
  return setmetatable(t or {}, array_mt)
end

local ESCAPES = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}

local function escape(c)
  return ESCAPES[c] or string.format("\\u%04x", c:byte())
end

local function encode(v, out)
  local t = type(v)
  if v == nil or v == cjson.null then
    out[#out + 1] = "null"
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      out[#out + 1] = "null"
    elseif v == math.floor(v) and math.abs(v) < 2 ^ 53 then
      out[#out + 1] = string.format("%d", v)
    else
      out[#out + 1] = string.format("%.16g", v)
    end
  elseif t == "string" then
    out[#out + 1] = '"' .. v:gsub('[%c"\\]', escape) .. '"'
  elseif t == "table" then
    if getmetatable(v) == array_mt or v[1] ~= nil then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        encode(k, out)
        out[#out + 1] = ":"
        local value = v[k]
        if value == nil then value = v[tonumber(k)] end
        encode(value, out)
      end
      out[#out + 1] = "}"
    end
  else
    error("json: cannot encode a " .. t)
  end
end

function M.encode(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

-- Returns the value, or nil and cjson's message for malformed input.
function M.decode(s)
  local ok, v = pcall(cjson.decode, s)
  if ok then return v end
  return nil, v
end

return M
