--- Scratch files for specs: a private temp dir, and reading and writing
-- whole files.
local M = {}

--- A new empty directory under the system's temp dir.
function M.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir), "cannot make " .. dir)
  return dir
end

function M.remove(path)
  os.execute("rm -rf " .. path)
end

--- The file's bytes, or nil when it does not exist.
function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- Writes content to path (replacing it); returns path.
function M.write(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return path
end

return M
