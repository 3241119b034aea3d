--- bearer.overten.endpoints: the Overten API as data, one declaration per
-- endpoint (bearer.endpoint builds the methods; bearer.check is the
-- vocabulary). What is not here is hand-written because it behaves
-- differently: generation and wait (bearer.task), save and download
-- (bearer.download), rotate_key (bearer.rotation).
--
-- Bounds are the API's documented ones. Options not declared go through
-- to the body or query: fields the API adds later work without a release.
local check = require "bearer.check"

local M = {}

--- The key schemes of this API (bearer.overten.schemes).
M.schemes = require "bearer.overten.schemes"

local function text(max, required) return { "text", min = 1, max = max, required = required } end

local FORMAT = { "enum", values = { excel = true, word = true, slides = true },
                 label = "excel, word or slides", required = true }
local LIMIT = { "integer", min = 1, max = 100 }
local TIMEOUT = { "number" }
local SCALAR = { "scalar" }                     -- a filter: string, number, boolean or a list
local FORM_FIELD = { "scalar", expected = "string" }
local STRING = { "string" }

-- A listing: cursor pages of at most 100, the caller's filters kept on
-- every page.
local function listing(name, path)
  return { name = name, method = "GET", path = path, paged = "cursor",
           fields = { limit = LIMIT, cursor = STRING }, others = SCALAR }
end

-- Billable calls without a documented idempotency field: not retried once
-- sent (a retry could bill twice) unless the caller gives a key.
local function billable(name, path, fields, extra)
  local d = { name = name, method = "POST", path = path, opts = "required", fields = fields,
              call = { timeout = TIMEOUT }, idempotency = "optional" }
  for k, v in pairs(extra or {}) do d[k] = v end
  return d
end

--- The API-key client's endpoints.
M.client = {
  { name = "verify", method = "GET", path = "/verify", opts = "none",
    secrets = { webhook_secret = "webhook" } },

  { name = "preflight", method = "POST", path = "/preflight", opts = "required",
    fields = { format = FORMAT, prompt = text(10000, true) } },
  billable("excel_analyze", "/excel/analyze",
           { file_id = { "string", required = true }, prompt = text(5000, true) },
           { aliases = { "analyze" } }),
  billable("humanize", "/text/humanize", { text = text(20000, true) }, { shorthand = "text" }),
  billable("rewrite", "/text/rewrite", { text = text(20000, true), prompt = text(2000, true) }),
  billable("new_content", "/text/new-content", { prompt = text(10000, true), file_name = STRING }),

  { name = "task", method = "GET", path = "/tasks/{task_id}", opts = "none" },
  { name = "run", method = "GET", path = "/runs/{run_id}", opts = "none" },
  listing("runs", "/runs"),
  { name = "export", method = "POST", path = "/runs/{run_id}/export", opts = "none",
    args = { { "format", { "text", min = 1 } } } },

  { name = "upload", method = "POST", path = "/files", into = "form",
    args = { { "file", STRING } },
    fields = { purpose = FORM_FIELD, filename = STRING, content_type = STRING } },
  { name = "convert", method = "POST", path = "/files/{file_id}/convert", into = "form",
    opts = "none", args = { { "format", { "text", min = 1 } } } },
  { name = "upload_image", method = "POST", path = "/images", into = "form",
    args = { { "file", STRING } },
    fields = { tags = SCALAR, caption = FORM_FIELD, filename = STRING, content_type = STRING } },
  listing("images", "/images"),
  { name = "image", method = "GET", path = "/images/{image_id}", opts = "none" },
  { name = "delete_image", method = "DELETE", path = "/images/{image_id}", opts = "none" },

  { name = "create_webhook", method = "POST", path = "/webhooks", opts = "required",
    fields = { url = { "url", required = true }, events = { "list", min = 1, required = true },
               description = STRING },
    arrays = { "events" }, secrets = { secret = "webhook" } },
  listing("webhooks", "/webhooks"),
  { name = "delete_webhook", method = "DELETE", path = "/webhooks/{webhook_id}", opts = "none" },

  { name = "create_project", method = "POST", path = "/projects", opts = "required",
    fields = { name = { "string", required = true }, description = STRING, tags = { "list" } },
    arrays = { "tags" } },
  { name = "attach_file", method = "POST", path = "/projects/{project_id}/files", into = "form",
    args = { { "file", STRING } },
    fields = { role = FORM_FIELD, category = FORM_FIELD, description = FORM_FIELD, tags = SCALAR,
               filename = STRING, content_type = STRING } },
  { name = "analysis_status", method = "GET", path = "/projects/{project_id}/analysis/status",
    opts = "none" },
  listing("insights", "/projects/{project_id}/insights"),
  { name = "resolve_insight", method = "PATCH", path = "/projects/{project_id}/insights/{insight_id}",
    defaults = { resolved = true } },
}

--- runs_page: one page of `runs` as nil, err, `{ data =, next_cursor = }`.
M.runs_page = listing("runs_page", "/runs")

local TIERS = { "enum", values = { free = true, pro = true, enterprise = true },
                label = "free, pro or enterprise" }
local KEY_SECRETS = { secret = "overten", webhook_secret = "webhook" }

--- The Firebase-authenticated (admin) endpoints.
M.admin = {
  { name = "signup", method = "POST", path = "/signup", opts = "required",
    fields = { org_name = { "text", min = 2, max = 120 }, existing_org_id = STRING, tier = TIERS,
               key_name = { "text", min = 0, max = 80 } },
    validate = function(opts)
      if (opts.org_name == nil) == (opts.existing_org_id == nil) then
        return check.invalid("org_name", "or existing_org_id: exactly one is needed")
      end
      return true
    end,
    secrets = KEY_SECRETS },
  { name = "create_key", method = "POST", path = "/organizations/{org_id}/api-keys",
    fields = { name = { "text", min = 0, max = 80 } },
    -- the notes do not say whether the API reads `name` or `key_name`
    -- (signup uses key_name): both are sent
    prepare = function(body) body.key_name = body.key_name or body.name end,
    secrets = KEY_SECRETS },
  { name = "keys", method = "GET", path = "/organizations/{org_id}/api-keys", paged = "cursor",
    fields = { cursor = STRING }, others = SCALAR },
  { name = "revoke_key", method = "DELETE", path = "/organizations/{org_id}/api-keys/{key_id}",
    opts = "none" },
}

return M
