--- bearer.json: the JSON codec every bearer module uses, lua-cjson's
-- `cjson.safe` (decode returns nil, err instead of raising).
--
-- lua-cjson is a run-time dependency bearer does not carry (the rockspec
-- lists it; Debian's lua-cjson package serves 5.1 to 5.4 and LuaJIT). When
-- it is missing, every module that needs JSON stops here with one line
-- saying what to install, instead of the loader's list of every path tried.
local ok, cjson = pcall(require, "cjson.safe")
if not ok then
  local why = tostring(cjson)
  if why:find("^module 'cjson%.safe' not found") then
    local running = type(jit) == "table" and "LuaJIT" or _VERSION
    why = ("lua-cjson is not installed for %s (Debian: apt-get install lua-cjson; "
           .. "LuaRocks: luarocks install lua-cjson)"):format(running)
  end
  error("bearer: " .. why, 0)
end
return cjson
