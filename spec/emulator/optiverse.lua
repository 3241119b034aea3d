-- Optiverse (real base https://api.optiverse.ai/external-api), served under
-- /external-api. Read-only API: records, protocol templates, and the
-- structured / unstructured summaries of records for a template.
local common = require "common"
local json = require "json"

local M = {}

M.API_KEY = "optiuser_v1_test_4f9a2c1d8e7b6a5f"
local KEY_PREFIX = "optiuser_v1_"
local OWNER_EMAIL = "test.user@example.ai"

local KEYS = { [common.sha256_hex(M.API_KEY)] = { email = OWNER_EMAIL } }

local PEOPLE = {
  { name = "Test User", email = OWNER_EMAIL },
  { name = "John Doe", email = "john@example.ai" },
  { name = "Sarah Klein", email = "sarah.klein@example.ai" },
  { name = "Amir Haddad", email = "amir.haddad@example.ai" },
  { name = "Mei Lin", email = "mei.lin@example.ai" },
  { name = "Lukas Brandt", email = "lukas.brandt@example.ai" },
  { name = "Priya Nair", email = "priya.nair@example.ai" },
  { name = "Carlos Ruiz", email = "carlos.ruiz@acme-corp.example" },
  { name = "Emma Wilson", email = "emma.wilson@northwind.example" },
}

local TITLES = {
  "Team Standup", "Q2 Planning Session", "Weekly Product Sync", "Customer call: Acme Corp",
  "Design Review", "1:1 Sarah / Test User", "Sprint Retrospective", "Hiring Committee",
  "Board Prep", "Sales Pipeline Review", "Onboarding: Northwind", "Incident Review",
  "Marketing Campaign Kickoff", "Budget Review", "Architecture Deep Dive",
}

-- summaryType decides which summaries endpoint serves a template; `every`
-- says which seeded records have a summary for it (record number % every == 0).
local TEMPLATES = {
  { protocolId = "b7c4c322-2fd4-474b-8937-b46ff465e0af", title = "Meeting Minutes",
    description = "Extracts action items and decisions", summaryType = "structured",
    managedBy = "optiverse", createdAt = "2025-03-01T12:00:00Z", every = 1,
    sections = {
      { "Action Items", "What are the action items from this meeting?",
        "{name} will prepare the follow-up for \"{title}\" by Friday" },
      { "Decisions", "Which decisions were made?",
        "The team agreed to proceed with the plan discussed in \"{title}\"" },
    } },
  { protocolId = "3f1d2a8e-6b7c-4d9e-8f0a-1b2c3d4e5f60", title = "Sales Call Debrief",
    description = "Customer needs, objections and next steps", summaryType = "structured",
    managedBy = "user", createdAt = "2025-05-12T08:30:00Z", every = 3,
    sections = {
      { "Customer Needs", "What does the customer need?",
        "{name} asked for a clearer rollout plan" },
      { "Next Steps", "What are the agreed next steps?",
        "{name} sends a revised proposal after \"{title}\"" },
    } },
  { protocolId = "eefc041d-58ea-4f8f-9119-fd4e9315ff0e", title = "Executive Summary",
    description = "Free-form markdown summary", summaryType = "unstructured",
    managedBy = "user", createdAt = "2025-06-15T09:00:00Z", every = 2 },
  { protocolId = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d", title = "Standup Notes",
    description = "Short markdown notes: progress, plans, blockers", summaryType = "unstructured",
    managedBy = "optiverse", createdAt = "2025-02-01T07:00:00Z", every = 5 },
}
local templates_by_id = {}
for _, t in ipairs(TEMPLATES) do templates_by_id[t.protocolId] = t end

-- records[1] is the newest. Each entry is { pub = <the API's JSON object>,
-- t = start epoch, n = seed number (nil for records inserted by a spec) }.
local records, records_by_id, rand

local function new_record(start, n)
  local people, seen = {}, {}
  for _ = 1, 1 + rand(5) do
    local p = PEOPLE[rand(#PEOPLE)]
    if not seen[p] then seen[p] = true; people[#people + 1] = p end
  end
  -- One meeting in five was shared with the user by a colleague.
  local role, owner = "owner", OWNER_EMAIL
  if rand(5) == 1 then role, owner = "viewer", PEOPLE[1 + rand(#PEOPLE - 1)].email end
  local rec = {
    t = start, n = n,
    pub = {
      recordId = common.uuid(rand), role = role, ownerEmail = owner,
      meetingTitle = TITLES[rand(#TITLES)],
      startDate = common.iso(start, "Z"), endDate = common.iso(start + 900 * rand(6), "Z"),
      attendees = json.array(people), createdAt = common.iso(start, "Z"),
    },
  }
  records_by_id[rec.pub.recordId] = rec
  return rec
end

-- Seconds added to ngx.now() for the poll limit. Specs that fake their
-- clock advance it as they "sleep" (POST /_emulator/optiverse/clock), so
-- the limit is judged on the same time line as the client's spacing.
local skew = 0   -- reset() zeroes it, hence declared before it

-- 250 meetings, one every ~2.8 days on working hours from 2025-01-06 to
-- 2026-11-20, stored newest first.
function M.reset()
  skew = 0
  rand = common.prng(20250106)
  records, records_by_id = {}, {}
  local first, last = common.epoch(2025, 1, 6), common.epoch(2026, 11, 20)
  local count = 250
  for n = 1, count do
    local day = first + math.floor((n - 1) * (last - first) / 86400 / (count - 1)) * 86400
    local start = day + 3600 * (7 + rand(10)) + 900 * (rand(4) - 1)
    table.insert(records, 1, new_record(start, n))
  end
end

-- Inserts `count` new meetings ahead of the newest one, an hour apart. They
-- have no summaries yet (as freshly recorded meetings would not).
function M.insert_records(count)
  local ids, fresh = json.array(), {}
  for k = 1, count do
    local rec = new_record(records[1].t + 3600 * k, nil)
    ids[k], fresh[count - k + 1] = rec.pub.recordId, rec
  end
  for _, rec in ipairs(records) do fresh[#fresh + 1] = rec end
  records = fresh
  return ids, #records
end

------------------------------------------------------------ auth, limits --

local function fail(status, code, message, headers)
  return common.error("optiverse", status, code, message, headers)
end

local function authenticate(req)
  local auth = req.headers["authorization"]
  if auth == nil or auth == "" then
    return fail(401, "AUTH001", "Authorization header is missing.")
  end
  local token = common.bearer_token(req.headers)
  if not token or token:sub(1, #KEY_PREFIX) ~= KEY_PREFIX or not KEYS[common.sha256_hex(token)] then
    return fail(401, "AUTH002", "Invalid API key: wrong format, expired, or not found.")
  end
end

-- The documented "one request per 3 minutes" limit, off unless a spec sets
-- optiverse_poll_limit. Sliding window over accepted requests; a new limit
-- object (from POST /_emulator/config) starts with an empty window.
local window = { limit = nil, hits = {} }

function M.advance_clock(seconds)
  skew = skew + seconds
  return ngx.now() + skew
end

local function rate_limit(limit)
  if not limit then return end
  if window.limit ~= limit then window = { limit = limit, hits = {} } end
  local now, hits = ngx.now() + skew, window.hits
  while hits[1] and hits[1] <= now - limit.per do table.remove(hits, 1) end
  if #hits >= limit.requests then
    local wait = math.max(1, math.ceil(hits[1] + limit.per - now))
    return fail(429, common.OPTIVERSE_RATE_CODE,
                "Rate limit exceeded: " .. limit.requests .. " request(s) per " .. limit.per .. " s.",
                { ["Retry-After"] = tostring(wait) })
  end
  hits[#hits + 1] = now
end

----------------------------------------------------------- query checks --

local function invalid(message)
  return fail(400, "VAL001", message)
end

-- dateFrom/dateTo are inclusive bounds on the meeting's startDate; a
-- date-only dateTo covers that whole day.
local function date_range(args)
  local from, to = -math.huge, math.huge
  if args.dateFrom ~= nil then
    from = common.parse_iso(args.dateFrom)
    if not from then return nil, "dateFrom must be an ISO 8601 date or date-time" end
  end
  if args.dateTo ~= nil then
    local date_only
    to, date_only = common.parse_iso(args.dateTo)
    if not to then return nil, "dateTo must be an ISO 8601 date or date-time" end
    if date_only then to = to + 86399.999 end
  end
  if from > to then return nil, "dateFrom must not be after dateTo" end
  return { from = from, to = to }
end

-- Validated limit, offset and date range; nil and an error response if any
-- is malformed.
local function paging(args, default_limit, max_limit)
  local limit, lerr = common.int_arg(args, "limit", default_limit, 1, max_limit)
  local offset, oerr = common.int_arg(args, "offset", 0, 0)
  local range, derr = date_range(args)
  if not (limit and offset and range) then return nil, invalid(lerr or oerr or derr) end
  range.limit, range.offset = limit, offset
  return range
end

-- One page of the records `recs`, each shown through `view`, plus the
-- pagination object.
local function page(recs, q, view, with_has_more)
  local data = json.array()
  for i = q.offset + 1, math.min(q.offset + q.limit, #recs) do data[#data + 1] = view(recs[i]) end
  local pagination = { total = #recs, limit = q.limit, offset = q.offset }
  if with_has_more then pagination.hasMore = q.offset + #data < #recs end
  return common.json(200, { success = true, data = data, pagination = pagination })
end

-------------------------------------------------------------- endpoints --

local function list_records(req)
  local q, err = paging(req.args, 50, 100)
  if not q then return err end
  local recs = {}
  for _, rec in ipairs(records) do
    if rec.t >= q.from and rec.t <= q.to then recs[#recs + 1] = rec end
  end
  return page(recs, q, function(rec) return rec.pub end, true)
end

local function protocol_templates()
  local data = json.array()
  for _, t in ipairs(TEMPLATES) do
    data[#data + 1] = { protocolId = t.protocolId, title = t.title, description = t.description,
                        summaryType = t.summaryType, managedBy = t.managedBy,
                        createdAt = t.createdAt }
  end
  return common.json(200, { success = true, data = data })
end

-- The summary of `rec` for template `t`, generated from the record so that
-- nothing needs storing.
local function summary(rec, t)
  local pub = rec.pub
  local lead, title = pub.attendees[1].name, pub.meetingTitle
  -- Written two hours after the start, i.e. after the meeting (<= 90 min).
  local out = { recordId = pub.recordId, createdAt = common.iso(rec.t + 7200, "Z") }
  if t.summaryType == "structured" then
    out.sections = json.array()
    for i, s in ipairs(t.sections) do
      local text = s[3]:gsub("{(%w+)}", { name = lead, title = title })
      out.sections[i] = { title = s[1], question = s[2], answerType = "text",
                          answers = json.array { { answer = text,
                            referenceIds = json.array { rec.n % 40 + i, rec.n % 40 + 10 * i } } } }
    end
  else
    local names = {}
    for i, p in ipairs(pub.attendees) do names[i] = p.name end
    out.summary = "## Meeting Summary\n\n" .. title .. " with " .. table.concat(names, ", ")
                  .. ". The team reviewed progress and open questions.\n\n### Next Steps\n- "
                  .. lead .. ": share the notes\n- " .. names[#names] .. ": follow up on open items"
  end
  return out
end

local function summaries(summary_type)
  return function(req)
    local args = req.args
    if type(args.protocolId) ~= "string" or not args.protocolId:match(common.UUID_PATTERN) then
      return invalid("protocolId is required and must be a UUID")
    end
    if args.recordId ~= nil and (type(args.recordId) ~= "string"
                                 or not args.recordId:match(common.UUID_PATTERN)) then
      return invalid("recordId must be a UUID")
    end
    local q, err = paging(args, 20, 50)
    if not q then return err end
    local t = templates_by_id[args.protocolId:lower()]
    if not t or t.summaryType ~= summary_type then
      return fail(404, "PERM001", "Protocol template not found or access denied.")
    end
    local only = args.recordId and records_by_id[args.recordId:lower()]
    if args.recordId and not only then
      return fail(404, "PERM001", "Record not found or access denied.")
    end
    local recs = {}
    for _, rec in ipairs(records) do
      if rec.n and rec.n % t.every == 0 and (not only or rec == only)
         and rec.t >= q.from and rec.t <= q.to then
        recs[#recs + 1] = rec
      end
    end
    return page(recs, q, function(rec) return summary(rec, t) end, false)
  end
end

local ROUTES = {
  { "GET", "^/v1/list%-records$", list_records },
  { "GET", "^/v1/protocol%-templates$", protocol_templates },
  { "GET", "^/v1/summaries/structured$", summaries("structured") },
  { "GET", "^/v1/summaries/unstructured$", summaries("unstructured") },
}

-- Unknown paths and methods are both 404 PERM001 (an Express-style API has
-- no 405). Order for known routes: auth, then rate limit, then validation.
function M.handle(req, config)
  local handler = common.route(ROUTES, req.method, req.path:sub(#"/external-api" + 1))
  if not handler then
    return fail(404, "PERM001", "No route for " .. req.method .. " " .. req.path .. ".")
  end
  return authenticate(req) or rate_limit(config.optiverse_poll_limit) or handler(req)
end

M.reset()

return M
