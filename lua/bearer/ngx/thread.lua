--- bearer.ngx.thread: what runs in an nginx thread pool's Lua VM.
--
-- That VM is the pool thread's own and outlives a call, so the clients
-- made here stay, one per set of transport options, and keep their
-- connections alive. They hold no key: each transfer borrows the
-- credential from the vault by the number the requesting VM sent.
-- Only plain values go back (run_worker_thread copies them).
local core = require "bearer.core"

local M = {}
local clients = {}

--- Runs one transfer in a pool thread's VM (run_worker_thread's entry).
---@param spec table the call, plain values only (the key by its vault number)
---@return table|nil response
---@return table|nil err
function M.perform(spec)
  local client = clients[spec.id]
  if client == nil then
    client = core.client_new(spec.options)
    clients[spec.id] = client
  end
  local opts = spec.opts or {}
  opts.vault = spec.vault
  local res, err = client:perform(spec.method, spec.url, spec.headers, spec.body, opts)
  if res then return res end
  local plain = {}
  for k, v in pairs(err) do plain[k] = v end
  return nil, plain
end

return M
