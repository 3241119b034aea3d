--- Fuzz target "json": the core's JSON reader (bearer.json.decode) on any
-- bytes. It must return a document or nil and a reason, never raise or
-- crash; and where lua-cjson also reads the input, both must agree up to
-- bearer's documented differences (object nulls left out, integers kept
-- exact where cjson rounds them to floats).
-- Input: the body itself.

-- {================ bearer API used by this target
local json = require "bearer.json"
-- }================
local cjson = require "cjson.safe"

local null = cjson.null

local function same_number(ours, theirs)
  if ours == theirs then return true end
  -- an integer past 2^53 that cjson rounded to the nearest float
  return math.type and math.type(ours) == "integer" and ours + 0.0 == theirs
end

-- ours against cjson's decode of the same text
local function agree(ours, theirs, path)
  local t = type(theirs)
  if t == "table" then
    if type(ours) ~= "table" then error(path .. ": table expected, got " .. type(ours), 0) end
    for k, v in pairs(theirs) do
      if v == null and type(k) == "string" then
        if ours[k] ~= nil then error(path .. "." .. k .. ": null member kept", 0) end
      else
        agree(ours[k], v, path .. "." .. tostring(k))
      end
    end
    for k in pairs(ours) do
      if theirs[k] == nil then error(path .. ": extra member " .. tostring(k), 0) end
    end
  elseif t == "number" then
    if type(ours) ~= "number" or not (same_number(ours, theirs) or (ours ~= ours and theirs ~= theirs)) then
      error(path .. ": number " .. tostring(theirs) .. " read as " .. tostring(ours), 0)
    end
  elseif ours ~= theirs then
    error(path .. ": " .. tostring(theirs) .. " read as " .. tostring(ours), 0)
  end
end

return function(data)
  local doc, why = json.decode(data)
  if doc == nil then
    if type(why) ~= "string" or not why:find("^invalid JSON: .* at byte %d+$") then
      error("refusal without its reason: " .. tostring(why), 0)
    end
  end
  local theirs = cjson.decode(data)
  if doc ~= nil and theirs ~= nil then agree(doc, theirs, "$") end
end
