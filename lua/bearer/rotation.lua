--- bearer.rotation: replacing a live API key without a gap, for any API
-- that can mint, check and revoke keys.
--
-- mint a new key, check it (a call made with it), hand it to deploy(),
-- then revoke the old key. If the check or deploy fails (raises, or
-- returns false / nil, err), the new key is revoked, the old one keeps
-- working, and nil, err comes back. If only the old key's revocation
-- fails, the new key is live and deployed: the error says so and carries
-- it (`err.new_key`).
local errors = require "bearer.error"

local M = {}

-- What deploy() said, as nil (it worked) or an error object.
local function deploy_outcome(deploy, secret, info)
  local ok, r, derr = pcall(deploy, secret, info)
  if not ok then
    return errors.is(r) and r or errors.new{ kind = "config", code = "deploy_failed",
                                            message = "deploy raised: " .. tostring(r) }
  end
  if r == false or (r == nil and derr ~= nil) then
    return errors.is(derr) and derr or errors.new{ kind = "config", code = "deploy_failed",
      message = "deploy failed" .. (derr ~= nil and (": " .. tostring(derr)) or "") }
  end
end

--- rotate{ mint = fn() -> info (with .secret, a bearer.Key, and .key_id) | nil, err,
--   check = fn(info) -> true | nil, err, deploy = fn(secret, info) | nil,
--   revoke = fn(key_id) -> true | nil, err, old_key_id = } -> info | nil, err
---@param steps { mint: function, check: function, deploy: function, revoke: function, old_key_id: string }
---@return table|nil result
---@return bearer.Error|nil err
function M.rotate(steps)
  local new, err = steps.mint()
  if not new then return nil, err end

  local function undo(e)
    local ok, rerr = steps.revoke(new.key_id)
    if not ok then e.revoke_error = rerr end
    e.key_id = new.key_id
    new.secret:close()
    return nil, e
  end

  local ok, cerr = steps.check(new)
  if not ok then return undo(cerr) end
  if steps.deploy then
    local derr = deploy_outcome(steps.deploy, new.secret, new)
    if derr then return undo(derr) end
  end
  local revoked, rerr = steps.revoke(steps.old_key_id)
  if not revoked then
    rerr.new_key = new
    return nil, rerr
  end
  return new
end

return M
