-- Feast-shaped load for wrk: POST /get-online-features with random users per request, int64
-- `user_id` join keys, and the `risk` request view's `amount` and `country` columns inside
-- `entities` (Feast's request shape). `wafer-bench serving --api feast --int-keys --wrk` runs it
-- against the server it sets up; by hand:
--   WAFER_USERS=100000 wrk -t2 -c16 -d10s -s bench/wrk/feast.lua http://127.0.0.1:PORT
-- Environment: WAFER_USERS (100000), WAFER_ENTITIES per request (1), WAFER_FEATURES (a
-- comma-separated feature list; default the user_stats features and the risk score),
-- WAFER_NO_REQUEST_VIEW=1 (no request columns), WAFER_API=native (POST /v1/features instead).

local users = tonumber(os.getenv("WAFER_USERS") or "100000")
local per = tonumber(os.getenv("WAFER_ENTITIES") or "1")
local rv = os.getenv("WAFER_NO_REQUEST_VIEW") ~= "1"
local native = os.getenv("WAFER_API") == "native"
local list = os.getenv("WAFER_FEATURES")
  or "user_stats:txn_count_7d,user_stats:amount_sum_7d,user_stats:amount_mean_7d,user_stats:last_country,risk:amount_vs_mean,risk:is_new_country,risk:risk_score"
local countries = { "DE", "FR", "US", "GB", "IT", "ES", "NL", "PL" }

local quoted = {}
for f in string.gmatch(list, "[^,]+") do
  quoted[#quoted + 1] = '"' .. f .. '"'
end
local features = "[" .. table.concat(quoted, ",") .. "]"
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
end

function request()
  local ids, amounts, cs = {}, {}, {}
  for i = 1, per do
    local u = math.random(0, users - 1)
    ids[i] = native and ('"' .. u .. '"') or tostring(u)
    amounts[i] = string.format("%d.%02d", math.random(0, 499), math.random(0, 99))
    cs[i] = '"' .. countries[math.random(1, #countries)] .. '"'
  end
  local body
  if native then
    local rd = rv and (',"request_data":{"amount":[' .. table.concat(amounts, ",") .. '],"country":[' .. table.concat(cs, ",") .. "]}") or ""
    body = '{"entities":[' .. table.concat(ids, ",") .. '],"features":' .. features .. rd .. "}"
    return wrk.format("POST", "/v1/features", headers, body)
  end
  local rd = rv and (',"amount":[' .. table.concat(amounts, ",") .. '],"country":[' .. table.concat(cs, ",") .. "]") or ""
  body = '{"features":' .. features .. ',"entities":{"user_id":[' .. table.concat(ids, ",") .. "]" .. rd .. "}}"
  return wrk.format("POST", "/get-online-features", headers, body)
end

local errors = 0
function response(status, headers, body)
  if status ~= 200 then
    errors = errors + 1
    if errors <= 3 then
      io.stderr:write("HTTP " .. status .. ": " .. body .. "\n")
    end
  end
end
