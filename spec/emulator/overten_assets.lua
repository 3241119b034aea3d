-- Overten files, images and projects: POST /files (multipart), file
-- conversion, the four /images endpoints and the six /projects endpoints.
-- Uploads are parsed, measured and hashed; their bytes are not kept.
local common = require "common"
local json = require "json"
local S = require "overten_state"

local M = {}

-------------------------------------------------------------- multipart --

-- Parts of a multipart/form-data body by name: { value=, filename=, type= }.
-- nil and a 422 when the body is not multipart.
local function multipart(req)
  local ct = req.headers["content-type"]
  local boundary = type(ct) == "string" and (ct:match('boundary="([^"]+)"') or ct:match("boundary=([^;%s]+)"))
  if not boundary or not ct:lower():find("^multipart/form%-data") then
    return nil, common.json(422, { detail = { { loc = { "body" }, type = "missing",
      msg = "Expected multipart/form-data" } } })
  end
  local parts, body, delim = {}, req.body, "--" .. boundary
  local pos = body:find(delim, 1, true)
  while pos do
    local head_start = pos + #delim
    if body:sub(head_start, head_start + 1) == "--" then break end
    local head_end = body:find("\r\n\r\n", head_start, true)
    if not head_end then break end
    local head = body:sub(head_start, head_end)
    local next_pos = body:find("\r\n" .. delim, head_end + 4, true)
    if not next_pos then break end
    local content = body:sub(head_end + 4, next_pos - 1)
    local name = head:match('[Cc]ontent%-[Dd]isposition:[^\r\n]-name="([^"]*)"')
    if name then
      parts[name] = { value = content, filename = head:match('filename="([^"]*)"'),
                      type = head:match("[Cc]ontent%-[Tt]ype:%s*([^\r\n]+)") }
    end
    pos = next_pos + 2
  end
  return parts
end

local function form_text(parts, name)
  local p = parts[name]
  return p and p.value or nil
end

-- `tags` as a JSON array string (documented for project files) or a
-- comma-separated list; nil and a 422 otherwise.
local function form_tags(parts)
  local raw = form_text(parts, "tags")
  if raw == nil or raw == "" then return json.array() end
  if raw:sub(1, 1) == "[" then
    local list = json.decode(raw)
    if type(list) ~= "table" then
      return nil, S.unprocessable("tags", "tags must be a JSON array of strings", "json_invalid")
    end
    return json.array(list)
  end
  local out = json.array()
  for tag in raw:gmatch("[^,]+") do out[#out + 1] = tag:match("^%s*(.-)%s*$") end
  return out
end

local function ext_of(filename)
  return (filename or ""):match("%.([%w]+)$") and filename:match("%.([%w]+)$"):lower() or ""
end

-- The uploaded file part, checked against the org's size limit.
local function file_part(parts, org)
  local file = parts.file
  if not file or not file.filename then
    return nil, S.unprocessable("file", "Field required", "missing")
  end
  local limit = org.upload_limit or S.UPLOAD_LIMITS[org.tier] or S.UPLOAD_LIMITS.free
  if #file.value > limit then
    return nil, S.error(413, "payload_too_large",
                        ("File is %d bytes; the %s tier allows %d."):format(#file.value, org.tier, limit))
  end
  return file
end

------------------------------------------------------------------ files --

local PURPOSES = { context = true, init = true, reference = true }

local function upload(req, key)
  local parts, err = multipart(req)
  if not parts then return err end
  local file
  file, err = file_part(parts, key.org)
  if not file then return err end
  local purpose = form_text(parts, "purpose") or "context"
  if not PURPOSES[purpose] then
    return S.unprocessable("purpose", "Input should be 'context', 'init' or 'reference'", "enum")
  end
  local rec = { file_id = S.id("file_"), org_id = key.org.org_id, filename = file.filename,
                ext = ext_of(file.filename), size = #file.value, purpose = purpose,
                content_type = file.type or "application/octet-stream",
                sha256 = common.sha256_hex(file.value), created_at = S.now_iso() }
  S.files[rec.file_id] = rec
  return common.json(201, { file_id = rec.file_id, filename = rec.filename, size = rec.size,
                            purpose = rec.purpose, content_type = rec.content_type,
                            sha256 = rec.sha256, created_at = rec.created_at })
end

local function convert(req, key, id)
  local parts, err = multipart(req)
  if not parts then return err end
  local format = form_text(parts, "format")
  if not format or format == "" then return S.unprocessable("format", "Field required", "missing") end
  local file = S.files[id]
  if not file or file.org_id ~= key.org.org_id then return S.not_found("File", id) end
  local gen = require "overten_gen"
  if not gen.convertible(file.ext, format) then
    return S.bad_request(("Cannot convert %s to %s. Valid targets: %s."):format(
      file.ext ~= "" and file.ext or "this file", format, gen.valid_targets(file.ext)))
  end
  local blob_id = "conv_" .. id .. "_" .. format
  S.blobs[blob_id] = { mime = "application/octet-stream",
                       filename = file.filename:gsub("%.[%w]+$", "") .. "." .. format }
  local url, expires = S.signed_url(blob_id)
  return common.json(200, { file_id = id, source_format = file.ext, format = format,
                            download_url = url, expires_at = expires })
end

----------------------------------------------------------------- images --

local function image_view(img)
  return { image_id = img.image_id, filename = img.filename, content_type = img.content_type,
           size = img.size, tags = img.tags, caption = img.caption, created_at = img.created_at }
end

local function upload_image(req, key)
  local parts, err = multipart(req)
  if not parts then return err end
  local file
  file, err = file_part(parts, key.org)
  if not file then return err end
  local tags
  tags, err = form_tags(parts)
  if not tags then return err end
  local img = { image_id = S.id("img_"), org_id = key.org.org_id, filename = file.filename,
                content_type = file.type or "application/octet-stream", size = #file.value,
                tags = tags, caption = form_text(parts, "caption") or json.null, created_at = S.now_iso() }
  S.images[img.image_id] = img
  table.insert(S.image_order, 1, img)
  return common.json(201, image_view(img))
end

local function has_tag(img, tag)
  for _, t in ipairs(img.tags) do if t == tag then return true end end
  return false
end

local function list_images(req, key)
  local items = {}
  for _, img in ipairs(S.image_order) do
    if img.org_id == key.org.org_id and not img.deleted
       and (req.args.tag == nil or has_tag(img, req.args.tag)) then
      items[#items + 1] = image_view(img)
    end
  end
  return S.page(req, items, "image_id", 20)
end

-- A deleted image answers 410 (it existed), an unknown one 404.
local function find_image(key, id)
  local img = S.images[id]
  if not img or img.org_id ~= key.org.org_id then return nil, S.not_found("Image", id) end
  if img.deleted then return nil, S.error(410, "gone", "Image " .. id .. " was deleted.") end
  return img
end

local function get_image(req, key, id)
  local img, err = find_image(key, id)
  if not img then return err end
  return common.json(200, image_view(img))
end

local function delete_image(req, key, id)
  local img, err = find_image(key, id)
  if not img then return err end
  img.deleted = true
  return common.response(204, "", "application/json")
end

--------------------------------------------------------------- projects --

local ROLES = { primary = true, context = true, reference = true }
local CATEGORIES = { document = true, spreadsheet = true, presentation = true, image = true,
                     cv_resume = true, contract = true, report = true, research = true, other = true }

local function project_view(p)
  return { project_id = p.project_id, name = p.name, description = p.description, tags = p.tags,
           created_at = p.created_at, file_count = #p.files, analysis_status = p.analysis.status }
end

local function create_project(req, key)
  local body, err = S.json_body(req)
  if not body then return err end
  local name
  name, err = S.text(body, "name", 1, 200, true)
  if not name then return err end
  local description
  description, err = S.text(body, "description", 0, 5000)
  if err then return err end
  if body.tags ~= nil and type(body.tags) ~= "table" then
    return S.unprocessable("tags", "Input should be a valid list", "list_type")
  end
  local p = { project_id = S.id("prj_"), org_id = key.org.org_id, name = name,
              description = description or json.null, tags = json.array(body.tags or {}),
              created_at = S.now_iso(), files = {}, insights = {},
              analysis = { status = "idle", progress = 0 } }
  S.projects[p.project_id] = p
  return common.json(201, project_view(p))
end

local function find_project(key, id)
  local p = S.projects[id]
  if not p or p.org_id ~= key.org.org_id then return nil, S.not_found("Project", id) end
  return p
end

-- Analysis walks queued -> running (two polls) -> completed, one step per
-- status poll; completing it writes one insight per file plus, with two
-- or more files, one discrepancy across them.
local function finish_analysis(p)
  p.insights = {}
  local severities = { "high", "medium", "low" }
  for i, f in ipairs(p.files) do
    p.insights[#p.insights + 1] = {
      insight_id = "ins_" .. p.project_id:sub(5, 12) .. "_" .. i, project_id = p.project_id,
      kind = "single_file", severity = severities[(i - 1) % 3 + 1],
      title = "Check figures in " .. f.filename, detail = "Totals in " .. f.filename .. " do not add up.",
      source_file_ids = json.array{ f.file_id }, resolved = false, resolved_at = json.null,
      created_at = S.now_iso() }
  end
  if #p.files >= 2 then
    p.insights[#p.insights + 1] = {
      insight_id = "ins_" .. p.project_id:sub(5, 12) .. "_x", project_id = p.project_id,
      kind = "discrepancy", severity = "high",
      title = "Figures disagree between files",
      detail = p.files[1].filename .. " and " .. p.files[2].filename .. " report different totals.",
      source_file_ids = json.array{ p.files[1].file_id, p.files[2].file_id }, resolved = false,
      resolved_at = json.null, created_at = S.now_iso() }
  end
end

local function attach_file(req, key, id)
  local p, err = find_project(key, id)
  if not p then return err end
  local parts
  parts, err = multipart(req)
  if not parts then return err end
  local file
  file, err = file_part(parts, key.org)
  if not file then return err end
  local role = form_text(parts, "role") or "context"
  if not ROLES[role] then
    return S.unprocessable("role", "Input should be 'primary', 'context' or 'reference'", "enum")
  end
  local category = form_text(parts, "category")
  if category and not CATEGORIES[category] then
    return S.unprocessable("category", "Input should be a known category", "enum")
  end
  local description = form_text(parts, "description")
  if description and #description > 1000 then
    return S.unprocessable("description", "String should have at most 1000 characters", "string_too_long")
  end
  local tags
  tags, err = form_tags(parts)
  if not tags then return err end
  local f = { file_id = S.id("file_"), project_id = p.project_id, filename = file.filename,
              size = #file.value, role = role, category = category or json.null,
              description = description or json.null, tags = tags, created_at = S.now_iso() }
  p.files[#p.files + 1] = f
  p.analysis = { status = "queued", progress = 0,
                 steps = { { "running", 33 }, { "running", 66 }, { "completed", 100 } } }
  local view = {}
  for k, v in pairs(f) do view[k] = v end
  view.analysis_status = "queued"
  return common.json(201, view)
end

local function analysis_status(req, key, id)
  local p, err = find_project(key, id)
  if not p then return err end
  local a = p.analysis
  local analyzed = a.status == "completed" and #p.files or math.floor(#p.files * a.progress / 100)
  local res = common.json(200, { project_id = p.project_id, status = a.status, progress = a.progress,
                                 files_total = #p.files, files_analyzed = analyzed })
  local step = a.steps and table.remove(a.steps, 1)
  if step then
    a.status, a.progress = step[1], step[2]
    if a.status == "completed" then finish_analysis(p) end
  end
  return res
end

-- Filters (names not documented): severity, kind, file_id, resolved.
local function list_insights(req, key, id)
  local p, err = find_project(key, id)
  if not p then return err end
  local a = req.args
  local resolved = a.resolved
  if resolved ~= nil and resolved ~= "true" and resolved ~= "false" then
    return S.bad_request("resolved must be true or false")
  end
  local items = {}
  for _, ins in ipairs(p.insights) do
    local keep = (a.severity == nil or ins.severity == a.severity)
                 and (a.kind == nil or ins.kind == a.kind)
                 and (resolved == nil or tostring(ins.resolved) == resolved)
    if keep and a.file_id ~= nil then
      keep = false
      for _, fid in ipairs(ins.source_file_ids) do if fid == a.file_id then keep = true end end
    end
    if keep then items[#items + 1] = ins end
  end
  return S.page(req, items, "insight_id", 20)
end

local function patch_insight(req, key, id, insight_id)
  local p, err = find_project(key, id)
  if not p then return err end
  local body
  body, err = S.json_body(req)
  if not body then return err end
  if body.resolved ~= nil and type(body.resolved) ~= "boolean" then
    return S.unprocessable("resolved", "Input should be a valid boolean", "bool_type")
  end
  for _, ins in ipairs(p.insights) do
    if ins.insight_id == insight_id then
      local resolved = body.resolved ~= false
      ins.resolved = resolved
      ins.resolved_at = resolved and S.now_iso() or json.null
      if type(body.note) == "string" then ins.note = body.note end
      return common.json(200, ins)
    end
  end
  return S.not_found("Insight", insight_id)
end

-- A .docx insights report: a Word generation run, always queued.
local function report(req, key, id)
  local p, err = find_project(key, id)
  if not p then return err end
  local body
  body, err = S.json_body(req)
  if not body then return err end
  if p.analysis.status ~= "completed" then
    return S.error(409, "conflict", "Project " .. id .. " analysis is " .. p.analysis.status .. ".")
  end
  body.prompt = body.prompt or ("Insights report for " .. p.name)
  body.file_name = body.file_name or (p.name .. " insights")
  return require("overten_gen").run_generation(req, key, "word", body, true)
end

M.ROUTES = {
  { "POST", "^/files$", upload },
  { "POST", "^/files/([^/]+)/convert$", convert },
  { "POST", "^/images$", upload_image },
  { "GET", "^/images$", list_images },
  { "GET", "^/images/([^/]+)$", get_image },
  { "DELETE", "^/images/([^/]+)$", delete_image },
  { "POST", "^/projects$", create_project },
  { "POST", "^/projects/([^/]+)/files$", attach_file },
  { "GET", "^/projects/([^/]+)/analysis/status$", analysis_status },
  { "GET", "^/projects/([^/]+)/insights$", list_insights },
  { "PATCH", "^/projects/([^/]+)/insights/([^/]+)$", patch_insight },
  { "POST", "^/projects/([^/]+)/reports$", report },
}

return M
