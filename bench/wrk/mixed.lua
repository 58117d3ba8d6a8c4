-- Mixed campus load (issue 12): in every 10 requests, 3 quick check-ins (`打卡 36.5`), 2 pass
-- code requests (`健康码`, an image reply), 3 guard scans of a pass code (VERIFY) and 2 place
-- check-ins (a SCAN of the place poster `place:BLIB`). Seeded by bench/mixed_bench.py.
--   wrk -t1 -c16 -d20s -s bench/wrk/mixed.lua http://127.0.0.1:PORT/wechat \
--       -- token=T users=2000 prefix=obstu guards=100 tokens=/tmp/mixed/tokens.txt part=0
--
-- `part` (0–9) keeps MsgIds and event CreateTimes apart when several wrk run at once (one per
-- worker). done() prints BENCH_JSON and BENCH_QUANTILES (1000 latency quantiles, ms), which
-- bench/mixed_bench.py merges across the wrk processes.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local st, tokens, guards, part, base_time
local KINDS = { "checkin", "code", "scan", "checkin", "place", "scan", "code", "checkin",
                "scan", "place" }
local EXPECTED = {
  { "checkin", "36.5" },
  { "code", "<MsgType><![CDATA[image]]></MsgType>" },
  { "place", "BLIB" },  -- the place's name, in a place check-in's reply
  { "scan", "\226\156\133" },  -- ✅, a guard's pass verdict
}

setup = common.setup

function init(args)
  local rest = {}
  for _, arg in ipairs(args) do
    local k, v = arg:match("^([%w_]+)=(.*)$")
    if k == "tokens" then
      tokens = {}
      for line in io.lines(v) do
        if #line > 0 then tokens[#tokens + 1] = line end
      end
    elseif k == "guards" then
      guards = tonumber(v)
    elseif k == "part" then
      part = tonumber(v)
    else
      rest[#rest + 1] = arg
    end
  end
  assert(tokens and #tokens > 0, "tokens=FILE is required")
  assert(guards and guards > 0, "guards=N is required")
  part = part or 0
  st = common.thread_state(rest, tid)
  st.o.run = st.o.run - st.o.run % 10 + part
  base_time = 1000000000 + part * 100000000 + tid * 10000000 + (st.o.run % 100) * 100000
end

local function event(openid, n, inner)
  return "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
    .. "<FromUserName><![CDATA[" .. openid .. "]]></FromUserName>"
    .. "<CreateTime>" .. string.format("%d", base_time + n) .. "</CreateTime>"
    .. "<MsgType><![CDATA[event]]></MsgType>" .. inner .. "</xml>"
end

function request()
  local n = st.counter
  local kind = KINDS[n % #KINDS + 1]
  local student = st.users[(n * 7919) % #st.users + 1]
  local body
  if kind == "checkin" then
    body = common.body(st, student, "打卡 36.5")
  elseif kind == "code" then
    body = common.body(st, student, "健康码")
  elseif kind == "scan" then
    st.counter = n + 1
    local guard = common.openid("obguard", (n + part * 13) % guards)
    local code = tokens[(n * 104729 + part) % #tokens + 1]
    body = event(guard, n, "<Event><![CDATA[scancode_waitmsg]]></Event>"
      .. "<EventKey><![CDATA[VERIFY]]></EventKey>"
      .. "<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>"
      .. "<ScanResult><![CDATA[" .. code .. "]]></ScanResult></ScanCodeInfo>")
  else
    st.counter = n + 1
    body = event(student, n, "<Event><![CDATA[SCAN]]></Event>"
      .. "<EventKey><![CDATA[place:BLIB]]></EventKey><Ticket><![CDATA[t]]></Ticket>")
  end
  return wrk.format("POST", st.path, st.headers, body)
end

function response(status, headers, body)
  common.count(status, body, EXPECTED)
end

function done(summary, latency, requests)
  common.done("mixed", { "checkin", "code", "place", "scan" }, summary, latency, requests)
  local q = {}
  for k = 0, 999 do
    q[#q + 1] = string.format("%.3f", latency:percentile((k + 0.5) / 10) / 1000)
  end
  io.write("BENCH_QUANTILES " .. table.concat(q, ",") .. "\n")
end
