-- wrk posts echo tasks with random keys (the key in both the query and the body, so a proxy
-- that hashes $arg_key sees it too). BENCH_PLACEMENT in wrk's environment, when set, goes in every
-- task's body as "placement" (scripts/bench-modes: "coordinator").
math.randomseed(os.time())
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local placement = os.getenv("BENCH_PLACEMENT")
local extra = (placement and placement ~= "") and (',"placement":"' .. placement .. '"') or ""
request = function()
  local k = math.random(1, 1000000)
  return wrk.format(nil, "/v1/tasks?key=k" .. k, nil,
    '{"key":"k' .. k .. '","type":"echo","payload":{"n":' .. k .. '}' .. extra .. '}')
end
