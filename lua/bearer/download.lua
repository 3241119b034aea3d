--- bearer.download: a file streamed to disk, following redirects without
-- the key. Usable by any API whose downloads answer with the file or with
-- a redirect to signed storage (Overten's runs and exports).
--
-- The body streams to `path.part-<random>`, renamed on success and
-- removed on any failure. The key goes only to the client's own base URL;
-- a redirect's target is a credential of its own (a signed URL), so it is
-- fetched without ours and its query never shows in a trace.
local bearer = require "bearer"
local client = require "bearer.client"
local errors = require "bearer.error"

--- Options of downloads and saves.
---@class bearer.SaveOptions
---@field timeout number|nil seconds per attempt
---@field max_bytes integer|nil the cap (default 1 GiB)
---@field on_progress (fun(done: integer, total: integer|nil))|nil bytes received

--- A file saved to disk.
---@class bearer.Saved
---@field path string
---@field bytes integer
---@field content_type string|nil
---@field filename string|nil

local M = { MAX_REDIRECTS = 3, MAX_BYTES = 1024 * 1024 * 1024 }

local function origin(url)
  return url:match("^(https?://[^/?#]+)")
end

-- Resolves a Location header against the URL it answered.
local function resolve(location, base)
  if location:find("^https?://") then return location end
  if location:sub(1, 2) == "//" then return base:match("^(https?:)") .. location end
  if location:sub(1, 1) == "/" then return origin(base) .. location end
  return base:gsub("[?#].*$", ""):gsub("[^/]*$", "") .. location
end

local function filename_of(headers)
  local cd = headers["content-disposition"]
  return cd and (cd:match('filename="([^"]*)"') or cd:match("filename=([^;%s]+)")) or nil
end

--- save(http, url, path [, { timeout=, max_bytes=, on_progress= }]) -> { path, bytes,
-- status, content_type, filename } | nil, err. `http` is a bearer.client;
-- `url` a path under its base URL or a full URL (sent without the key
-- unless it is under the base URL). Arguments are checked by the caller.
---@param http bearer.Client
---@param url string
---@param path string
---@param opts bearer.SaveOptions|nil
---@return bearer.Saved|nil saved
---@return bearer.Error|nil err
function M.save(http, url, path, opts)
  local base = http:base_url()
  local credentials = url:sub(1, #base + 1) == base .. "/" or url:sub(1, 1) == "/"
  local tmp = path .. ".part-" .. bearer.random_hex(6)
  local max_bytes = opts.max_bytes or M.MAX_BYTES
  local hops = 0
  while true do
    local res, err = http:request("GET", url, { sink = tmp, credentials = credentials,
                                                timeout = opts.timeout, max_bytes = max_bytes,
                                                on_progress = opts.on_progress })
    if res and res.status >= 200 and res.status < 300 then
      local ok, why = os.rename(tmp, path)
      if not ok then
        os.remove(tmp)
        return nil, errors.new{ kind = "config", code = "write_failed",
                                message = "cannot move the download into place: " .. tostring(why) }
      end
      local done = { path = path, bytes = res.bytes, status = res.status,
                     content_type = res.headers["content-type"], filename = filename_of(res.headers) }
      return client.remember(done, client.response_of(res))
    end
    os.remove(tmp)
    if not res then return nil, err end
    local location = res.headers.location
    if res.status < 300 or res.status >= 400 or not location then
      return nil, errors.new{ kind = "server", code = "unexpected_status", status = res.status,
        message = ("download answered HTTP %d without a file"):format(res.status) }
    end
    hops = hops + 1
    if hops > M.MAX_REDIRECTS then
      return nil, errors.new{ kind = "server", code = "too_many_redirects",
                              message = "download redirected more than " .. M.MAX_REDIRECTS .. " times" }
    end
    local abs = url:find("^https?://") and url or (base .. url)
    url = resolve(location, abs)
    credentials = false
  end
end

return M
